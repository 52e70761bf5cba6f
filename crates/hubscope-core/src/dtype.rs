//! The compute dtype a model is loaded in (f32, f16, bf16).

use burn::tensor::DType;

use crate::error::{Error, Result};

/// Compute dtype of the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDtype {
    F32,
    F16,
    BF16,
}

impl ComputeDtype {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(Error::Invalid(format!(
                "unknown dtype `{other}` (f32, f16, bf16)"
            ))),
        }
    }
    pub fn burn(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }
    /// `x` rounded to this dtype (as `torch.tensor(x, dtype=…)` stores a constant).
    pub fn round(self, x: f64) -> f64 {
        match self {
            Self::F32 => x as f32 as f64,
            Self::F16 => half::f16::from_f64(x).to_f64(),
            Self::BF16 => half::bf16::from_f64(x).to_f64(),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        }
    }
}
