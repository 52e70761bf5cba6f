//! hubscope's model core: one burn decoder for Qwen2/Qwen2.5, Qwen3 and Llama, loaded from
//! bytes, shared by the native binary and the browser app. No filesystem, threads or
//! blocking read-back here: I/O belongs to the callers.
//!
//! The data path, in module order: config bytes → [`config`] → [`layout`] + [`structure`]
//! (names, shapes: `inspect`, [`plan`]); weight bytes → [`safetensors`] / [`burnpack`]
//! (headers, dtypes) → [`load`] (load report, modules) → [`model::Model`]; [`bundle`] is the
//! one entry from a model's files to a model with its tokenizer ([`text`]) and defaults
//! ([`sampling`]); [`prompt`] → ids → [`generate`] → text. [`lora`] adapts and trains it,
//! [`export`] saves it, [`hub`] names its files on the Hub.

pub mod bundle;
pub mod burnpack;
pub mod cache;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod cpu;
pub mod dtype;
pub mod error;
pub mod export;
pub mod feed;
pub mod generate;
pub mod ggml;
pub mod gguf;
pub mod gguf_model;
pub mod gguf_tokenizer;
pub mod gguf_write;
pub mod handoff;
pub mod hub;
pub mod kv;
pub mod layout;
pub mod load;
pub mod lora;
pub mod model;
pub mod plan;
pub mod prompt;
pub mod quantize;
pub mod report;
pub mod rope;
pub mod safetensors;
pub mod sampling;
pub mod sequence;
pub mod stop;
pub mod structure;
pub mod text;
pub mod units;

pub use config::{Family, ModelConfig};
pub use dtype::{ComputeDtype, WeightDtype};
pub use error::{Error, Result};
pub use generate::{Generation, generate};
pub use model::Model;

/// Re-exported so callers name devices and tensors through one burn.
pub use burn;
pub use chrono;

/// A file to write: its name in the output folder and its bytes (exports, adapters).
pub struct OutFile {
    pub name: String,
    pub bytes: Vec<u8>,
}
