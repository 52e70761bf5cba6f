//! The load report: which checkpoint tensor went to which module parameter, and what became
//! of the rest (tied, ignored). `inspect` prints it; the loader reads what it says is loaded.

use serde::{Serialize, Serializer};

use crate::gguf::GgmlType;
use crate::safetensors::Dtype;

/// How a checkpoint stores a tensor: a safetensors dtype or a ggml type (GGUF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    Safetensors(Dtype),
    Ggml(GgmlType),
}

impl std::fmt::Display for StoredType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredType::Safetensors(d) => write!(f, "{d}"),
            StoredType::Ggml(t) => write!(f, "{}", t.name()),
        }
    }
}

/// One line of the load report: which checkpoint tensor went to which module parameter.
#[derive(Debug, Clone, Serialize)]
pub struct LoadEntry {
    pub tensor: String,
    pub file: String,
    pub module: String,
    pub shape: Vec<usize>,
    /// None for a tied parameter the checkpoint does not store (shown as "").
    #[serde(serialize_with = "dtype_or_empty")]
    pub stored_dtype: Option<StoredType>,
    pub status: LoadStatus,
}

/// What became of a checkpoint tensor (or a parameter the checkpoint need not store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadStatus {
    /// Read into its module's parameter.
    Loaded,
    /// A tied parameter, not stored: it shares `to`.
    Tied { to: String },
    /// A tied parameter stored anyway: transformers ignores it and ties it to `to`.
    TiedIgnored { to: String },
    /// A buffer checkpoints sometimes carry and transformers drops (`rotary_emb.inv_freq`).
    IgnoredBuffer,
}

impl std::fmt::Display for LoadStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadStatus::Loaded => write!(f, "loaded"),
            LoadStatus::Tied { to } => write!(f, "tied to {to}"),
            LoadStatus::TiedIgnored { to } => write!(f, "ignored (tied to {to})"),
            LoadStatus::IgnoredBuffer => write!(f, "ignored (buffer)"),
        }
    }
}

/// In JSON as the words above (`"loaded"`, `"tied to model.embed_tokens.weight"`, …).
impl Serialize for LoadStatus {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn dtype_or_empty<S: Serializer>(
    d: &Option<StoredType>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.collect_str(d),
        None => s.serialize_str(""),
    }
}

impl LoadReport {
    /// The entries whose tensors are read.
    pub fn loaded(&self) -> impl Iterator<Item = &LoadEntry> {
        self.entries
            .iter()
            .filter(|e| e.status == LoadStatus::Loaded)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub entries: Vec<LoadEntry>,
}
