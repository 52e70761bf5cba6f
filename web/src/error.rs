//! What can go wrong in the page, and how it is said in the page's language.

use crate::fetch::FetchError;
use crate::i18n::{Lang, t};

#[derive(Debug, Clone)]
pub enum AppError {
    Fetch(FetchError),
    Model(String),
    TooBig(String),
    NoWebGpu,
}

impl From<FetchError> for AppError {
    fn from(e: FetchError) -> Self {
        AppError::Fetch(e)
    }
}

impl From<hubscope_core::Error> for AppError {
    fn from(e: hubscope_core::Error) -> Self {
        AppError::Model(e.to_string())
    }
}

impl AppError {
    /// One line for the page's error box.
    pub fn message(&self, lang: Lang) -> String {
        match self {
            AppError::Fetch(FetchError::Status(404, url)) => {
                format!("{} ({url})", t(lang, "err.404"))
            }
            AppError::Fetch(FetchError::Status(401 | 403, _)) => t(lang, "err.401").to_string(),
            AppError::Fetch(FetchError::Network(m)) => format!("{} ({m})", t(lang, "err.network")),
            AppError::Fetch(e) => e.to_string(),
            AppError::Model(m) if m.contains("model_type") => {
                format!("{}: {m}", t(lang, "err.arch"))
            }
            AppError::Model(m) => m.clone(),
            AppError::TooBig(m) => format!("{}: {m}", t(lang, "err.too_big")),
            AppError::NoWebGpu => t(lang, "no_webgpu").to_string(),
        }
    }
}
