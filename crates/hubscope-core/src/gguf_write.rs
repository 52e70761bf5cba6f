//! A model as a GGUF file that llama.cpp loads: metadata typed and named as llama.cpp's
//! `convert_hf_to_gguf.py` writes it (architecture hyperparameters, the tokenizer, the chat
//! template), tensors under llama.cpp's names (llama's q/k rows permuted as its converter does),
//! typed by the converter's rules (norms and biases f32, weights in the chosen type or llama.cpp's
//! fallback) and quantized by [`crate::quantize`]; GGUF v3, data aligned to 32 bytes.

use burn::tensor::TensorData;
use serde_json::{Value, json};

use crate::bundle::TokenizerBytes;
use crate::config::ModelConfig;
use crate::dtype::{ComputeDtype, WeightDtype};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::gguf_model::{gguf_name, permute_rows, permuted_heads};
use crate::quantize::{self, BF16, F16, F32};

const ALIGNMENT: usize = 32;

/// A metadata value with the GGUF type llama.cpp reads it as.
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

impl Meta {
    /// As the GGUF reader ([`crate::gguf`]) shows values: JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Meta::U32(v) => json!(v),
            Meta::I32(v) => json!(v),
            Meta::F32(v) => json!(v),
            Meta::Bool(v) => json!(v),
            Meta::Str(v) => json!(v),
            Meta::Strs(v) => json!(v),
            Meta::I32s(v) => json!(v),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let (t, _) = self.codes();
        out.extend(t.to_le_bytes());
        match self {
            Meta::U32(v) => out.extend(v.to_le_bytes()),
            Meta::I32(v) => out.extend(v.to_le_bytes()),
            Meta::F32(v) => out.extend(v.to_le_bytes()),
            Meta::Bool(v) => out.push(u8::from(*v)),
            Meta::Str(v) => string(out, v),
            Meta::Strs(v) => {
                out.extend(8u32.to_le_bytes());
                out.extend((v.len() as u64).to_le_bytes());
                v.iter().for_each(|s| string(out, s));
            }
            Meta::I32s(v) => {
                out.extend(5u32.to_le_bytes());
                out.extend((v.len() as u64).to_le_bytes());
                v.iter().for_each(|i| out.extend(i.to_le_bytes()));
            }
        }
    }

    /// GGUF's value type (and an array's element type).
    fn codes(&self) -> (u32, Option<u32>) {
        match self {
            Meta::U32(_) => (4, None),
            Meta::I32(_) => (5, None),
            Meta::F32(_) => (6, None),
            Meta::Bool(_) => (7, None),
            Meta::Str(_) => (8, None),
            Meta::Strs(_) => (9, Some(8)),
            Meta::I32s(_) => (9, Some(5)),
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// llama.cpp's architecture name for a family hubscope writes.
fn architecture(config: &ModelConfig) -> Result<&'static str> {
    match config.model_type.as_str() {
        "llama" => Ok("llama"),
        "qwen2" => Ok("qwen2"),
        "qwen3" => Ok("qwen3"),
        other => Err(Error::Invalid(format!(
            "GGUF export is built for llama, qwen2 and qwen3 models, not `{other}`"
        ))),
    }
}

/// The architecture's hyperparameters as llama.cpp's converter names and types them.
fn model_metadata(config: &ModelConfig, arch: &str) -> Result<Vec<(String, Meta)>> {
    let raw = &config.raw;
    let u = |v: usize| Meta::U32(v as u32);
    let mut m: Vec<(&str, Meta)> = vec![
        ("context_length", u(config.max_position_embeddings)),
        ("embedding_length", u(config.hidden_size)),
        ("feed_forward_length", u(config.intermediate_size)),
        ("block_count", u(config.num_hidden_layers)),
        ("attention.head_count", u(config.num_attention_heads)),
        ("attention.head_count_kv", u(config.num_key_value_heads)),
        ("rope.freq_base", Meta::F32(config.rope_theta as f32)),
        (
            "attention.layer_norm_rms_epsilon",
            Meta::F32(config.rms_norm_eps as f32),
        ),
    ];
    if raw.get("head_dim").is_some_and(|v| !v.is_null()) {
        m.push(("attention.key_length", u(config.head_dim)));
        m.push(("attention.value_length", u(config.head_dim)));
    }
    if arch == "llama" {
        m.push(("vocab_size", u(config.vocab_size)));
        m.push(("rope.dimension_count", u(config.head_dim)));
    }
    match raw.get("rope_scaling").filter(|v| !v.is_null()) {
        None => {}
        Some(s) => {
            let kind = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str);
            let factor = s.get("factor").and_then(Value::as_f64);
            match (kind, factor) {
                (Some("linear"), Some(f)) => {
                    m.push(("rope.scaling.type", Meta::Str("linear".into())));
                    m.push(("rope.scaling.factor", Meta::F32(f as f32)));
                }
                (Some("default"), _) => {}
                _ => {
                    return Err(Error::Invalid(format!(
                        "GGUF export: rope scaling {s} is not written yet (linear only)"
                    )));
                }
            }
        }
    }
    Ok(m.into_iter()
        .map(|(k, v)| (format!("{arch}.{k}"), v))
        .collect())
}

/// The type a tensor is written as, by llama.cpp's converter's rules: 1-D tensors, norms and
/// anything not named `.weight` in f32; weights in `dtype` (its fallback where rows are not
/// whole blocks, the head wider as `llama-quantize` keeps it, and f16 where no block type
/// fits).
fn tensor_type(name: &str, shape: &[usize], dtype: WeightDtype, tied: bool) -> GgmlType {
    if shape.len() <= 1 || name.ends_with("_norm.weight") || !name.ends_with(".weight") {
        return F32;
    }
    match dtype {
        // `stored` names how a run holds weights, not a file type (export refuses it).
        WeightDtype::Float(ComputeDtype::F32) | WeightDtype::Stored => F32,
        WeightDtype::Float(ComputeDtype::F16) => F16,
        WeightDtype::Float(ComputeDtype::BF16) => BF16,
        WeightDtype::Blocks(q) => q
            .for_weight(name, shape[shape.len() - 1], tied)
            .unwrap_or(F16),
    }
}

/// `general.file_type` (llama.cpp's `llama_ftype`) of a file written in `dtype`.
fn file_type(dtype: WeightDtype) -> u32 {
    match dtype {
        WeightDtype::Float(ComputeDtype::F32) | WeightDtype::Stored => 0,
        WeightDtype::Float(ComputeDtype::F16) => 1,
        WeightDtype::Float(ComputeDtype::BF16) => 32,
        WeightDtype::Blocks(q) => q.file_type(),
    }
}

/// What a GGUF file is made from.
pub struct GgufModel<'a> {
    pub config: &'a ModelConfig,
    /// `general.name`.
    pub name: &'a str,
    pub tokenizer: Option<&'a TokenizerBytes>,
    /// Every parameter in f32 under transformers' names (as [`crate::export::named_tensors`]).
    pub tensors: Vec<(String, TensorData)>,
    pub dtype: WeightDtype,
}

/// The GGUF file's bytes.
pub fn to_gguf(m: GgufModel) -> Result<Vec<u8>> {
    let arch = architecture(m.config)?;
    let mut meta: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str(arch.into())),
        ("general.type".into(), Meta::Str("model".into())),
        ("general.name".into(), Meta::Str(m.name.into())),
    ];
    meta.extend(model_metadata(m.config, arch)?);
    meta.push(("general.file_type".into(), Meta::U32(file_type(m.dtype))));
    meta.push(("general.quantization_version".into(), Meta::U32(2)));
    if let Some(t) = m.tokenizer {
        meta.extend(crate::gguf_tokenizer::metadata(t, m.config)?);
    }

    let mut infos = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in m.tensors {
        let gname = gguf_name(&name).ok_or_else(|| {
            Error::Invalid(format!(
                "GGUF export: no llama.cpp name for tensor `{name}`"
            ))
        })?;
        let shape = t.shape().to_vec();
        let values = t
            .as_slice::<f32>()
            .map_err(|e| Error::Invalid(format!("GGUF export: {name}: {e:?}")))?;
        let ty = tensor_type(&name, &shape, m.dtype, m.config.tie_word_embeddings);
        let cols = *shape.last().unwrap_or(&1);
        let mut bytes = quantize::quantize_matrix(ty, values, cols.max(1))?;
        if arch == "llama"
            && let Some(heads) = permuted_heads(m.config, &name)
        {
            bytes = permute_rows(&bytes, shape[0], heads, true);
        }
        while data.len() % ALIGNMENT != 0 {
            data.push(0);
        }
        infos.push((gname, shape, ty, data.len() as u64));
        data.extend(bytes);
    }

    let mut out = Vec::with_capacity(data.len() + (1 << 20));
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((infos.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        string(&mut out, k);
        v.write(&mut out);
    }
    for (name, shape, ty, offset) in &infos {
        string(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(ty.0.to_le_bytes());
        out.extend(offset.to_le_bytes());
    }
    while out.len() % ALIGNMENT != 0 {
        out.push(0);
    }
    out.extend(data);
    Ok(out)
}
