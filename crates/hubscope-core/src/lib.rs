//! hubscope's model core: one burn decoder for Qwen2/Qwen2.5, Qwen3 and Llama, loaded from
//! bytes, shared by the native binary and the browser app. No filesystem, threads or
//! blocking read-back here: I/O belongs to the callers.
//!
//! The data path: config bytes → [`ModelConfig`] → [`structure::model_tree`] (names,
//! shapes: `inspect`, planner) and safetensors bytes → [`weights`] → [`model::CausalLm`] →
//! [`generate`] → tokens → text ([`text`]).

pub mod cache;
pub mod config;
pub mod error;
pub mod export;
pub mod generate;
pub mod hub;
pub mod lora;
pub mod model;
pub mod plan;
pub mod rope;
pub mod sampling;
pub mod structure;
pub mod text;
pub mod units;
pub mod weights;

pub use config::{Family, ModelConfig};
pub use error::{Error, Result};
pub use generate::{Generation, Model, generate};
pub use weights::ComputeDtype;

/// Re-exported so callers name devices and tensors through one burn.
pub use burn;
pub use chrono;
