//! The compute dtype a model is loaded in (f32, f16, bf16), and what `--dtype` names: that,
//! or linear weights quantized to ggml blocks as they load (q8_0, q4_0, q4_k).

use burn::tensor::DType;

use crate::error::{Error, Result};
use crate::quantize::Quant;

/// Compute dtype of the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// What a model's weights are loaded as: all in a compute dtype; the linear weights and the
/// embedding table quantized to ggml blocks as they load (computing in f32; `--dtype q4_k`);
/// or those kept as the checkpoint stores them — f16/bf16 values, or a GGUF file's blocks
/// where the CPU kernels read them — computing in f32 (`--dtype stored`: llama.cpp's way of
/// running a file, exactly transformers' f32 computation on the stored weights, in the
/// memory of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum WeightDtype {
    Float(ComputeDtype),
    Blocks(Quant),
    Stored,
}

impl From<WeightDtype> for String {
    fn from(d: WeightDtype) -> String {
        d.name().to_string()
    }
}

impl TryFrom<String> for WeightDtype {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        WeightDtype::parse(&s)
    }
}

impl WeightDtype {
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(q) = Quant::parse(s) {
            return Ok(Self::Blocks(q));
        }
        if s.eq_ignore_ascii_case("stored") {
            return Ok(Self::Stored);
        }
        ComputeDtype::parse(s).map(Self::Float).map_err(|_| {
            Error::Invalid(format!(
                "unknown dtype `{s}` (f32, f16, bf16, stored, or quantized: q8_0, q4_0, q4_k)"
            ))
        })
    }
    /// The dtype activations and float weights are computed in.
    pub fn compute(self) -> ComputeDtype {
        match self {
            Self::Float(d) => d,
            Self::Blocks(_) | Self::Stored => ComputeDtype::F32,
        }
    }
    pub fn quant(self) -> Option<Quant> {
        match self {
            Self::Float(_) | Self::Stored => None,
            Self::Blocks(q) => Some(q),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::Float(d) => d.name(),
            Self::Blocks(q) => q.name(),
            Self::Stored => "stored",
        }
    }
}

impl From<ComputeDtype> for WeightDtype {
    fn from(d: ComputeDtype) -> Self {
        Self::Float(d)
    }
}
