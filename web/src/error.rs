//! What can go wrong in the page or its model worker (the worker sends these to the page as
//! they are), and how each is said in the page's language — with what to try where the cause
//! is the tab's limits (memory, the GPU device).

use serde::{Deserialize, Serialize};

use crate::fetch::FetchError;
use crate::i18n::{Lang, t};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AppError {
    Fetch(FetchError),
    Model(String),
    TooBig(String),
    NoWebGpu,
    /// The user stopped the request (not an error to show).
    Stopped,
    /// WebAssembly memory could not grow for an allocation of this many bytes.
    OutOfMemory {
        bytes: u64,
    },
    /// The WebGPU device went away (driver reset, GPU process crash, `destroy`).
    DeviceLost(String),
    /// A WebGPU validation, shader or pipeline error.
    Gpu(String),
    /// The model worker stopped otherwise (a panic, a trap): its message.
    Crashed(String),
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
    /// Whether the worker that said it can no longer be used (its memory, device or state is
    /// gone): the page replaces it.
    pub fn ends_worker(&self) -> bool {
        matches!(
            self,
            AppError::OutOfMemory { .. }
                | AppError::DeviceLost(_)
                | AppError::Gpu(_)
                | AppError::Crashed(_)
        )
    }

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
            AppError::NoWebGpu => t(lang, "err.no_webgpu").to_string(),
            AppError::Stopped => t(lang, "stopped").to_string(),
            AppError::OutOfMemory { bytes } => format!(
                "{} ({})",
                t(lang, "err.oom"),
                hubscope_core::units::human_bytes(*bytes)
            ),
            AppError::DeviceLost(m) => format!("{} ({m})", t(lang, "err.device_lost")),
            AppError::Gpu(m) => format!("{} ({m})", t(lang, "err.gpu")),
            AppError::Crashed(m) => format!("{} ({m})", t(lang, "err.crashed")),
        }
    }
}
