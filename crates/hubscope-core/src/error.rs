//! Typed errors of the model core. Every variant names the file or field at fault.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: missing field `{field}`")]
    MissingField { file: String, field: String },
    #[error("{file}: field `{field}`: {message}")]
    InvalidField {
        file: String,
        field: String,
        message: String,
    },
    #[error(
        "config.json: unsupported model_type `{0}` (hubscope runs {supported})",
        supported = crate::config::Family::supported()
    )]
    UnsupportedModelType(String),
    #[error("{file}: not a valid GGUF header: {message}")]
    Gguf { file: String, message: String },
    #[error("{file}: tensor `{tensor}`: {message}")]
    GgufTensor {
        file: String,
        tensor: String,
        message: String,
    },
    #[error("{file}: not a valid safetensors file: {message}")]
    Safetensors { file: String, message: String },
    #[error(
        "{file}: tensor `{name}` has dtype {dtype}, which hubscope cannot load (F32, F16, BF16)"
    )]
    UnsupportedDtype {
        file: String,
        name: String,
        dtype: String,
    },
    #[error("missing tensor `{name}` (expected shape {expected:?}) for module `{module}`")]
    MissingTensor {
        name: String,
        module: String,
        expected: Vec<usize>,
    },
    #[error("{file}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        file: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{file}: unused tensor `{name}` (shape {shape:?}): no module of this {arch} takes it")]
    UnusedTensor {
        file: String,
        name: String,
        shape: Vec<usize>,
        arch: String,
    },
    #[error("model.safetensors.index.json: names shard `{0}`, which was not provided")]
    MissingShard(String),
    #[error("tokenizer.json: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error(
        "context too long: {requested} positions requested, the model allows {max} (max_position_embeddings)"
    )]
    ContextOverflow { requested: usize, max: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("device read-back failed: {0}")]
    Device(String),
    /// An error of a file that came from `place` (an adapter folder, a repo).
    #[error("{place}: {inner}")]
    In { place: String, inner: Box<Error> },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Say where the file at fault came from.
    pub fn within(self, place: impl Into<String>) -> Self {
        Error::In {
            place: place.into(),
            inner: Box::new(self),
        }
    }

    pub(crate) fn json(file: &str, source: serde_json::Error) -> Self {
        Error::Json {
            file: file.to_string(),
            source,
        }
    }
}
