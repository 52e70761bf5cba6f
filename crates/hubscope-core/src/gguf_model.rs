//! A GGUF file as a model hubscope runs: the `config.json` its metadata stands for, its
//! tensors under the names transformers gives them (llama.cpp's names mapped back, the q/k rows
//! it permutes for llama-architecture files put back in order), dequantized to the compute
//! dtype ([`crate::ggml`]) and built into the same modules as a safetensors checkpoint.

use burn::tensor::Device;
use serde_json::{Map, Value, json};

use crate::bundle::TokenizerBytes;
use crate::config::ModelConfig;
use crate::dtype::WeightDtype;
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::gguf::{GgufHeader, Parsed, parse};
use crate::model::Model;

/// The GGUF architectures hubscope runs: transformers' `model_type` and class, and whether
/// llama.cpp's converter permuted the q/k projection rows (it does for `llama`, for rotary in
/// its layout).
pub(crate) fn family(h: &GgufHeader) -> Result<(&'static str, &'static str, bool)> {
    match h.architecture() {
        Some("llama") => Ok(("llama", "LlamaForCausalLM", true)),
        Some("qwen2") => Ok(("qwen2", "Qwen2ForCausalLM", false)),
        Some("qwen3") => Ok(("qwen3", "Qwen3ForCausalLM", false)),
        other => Err(Error::Gguf {
            file: h.file.clone(),
            message: format!(
                "architecture `{}` is not one hubscope runs from GGUF (llama, qwen2, qwen3); \
                 its header is shown by `hubscope inspect`",
                other.unwrap_or("(none)")
            ),
        }),
    }
}

/// The `config.json` (as transformers' GGUF loader builds it) that the metadata stands for.
pub fn config_json(h: &GgufHeader) -> Result<Value> {
    let (model_type, class, _) = family(h)?;
    let arch = h.architecture().unwrap_or_default();
    let get = |key: &str| h.get(&format!("{arch}.{key}"));
    let need = |key: &str| {
        get(key).cloned().ok_or_else(|| Error::Gguf {
            file: h.file.clone(),
            message: format!("metadata `{arch}.{key}` is missing"),
        })
    };
    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("hidden_size".into(), need("embedding_length")?);
    c.insert("intermediate_size".into(), need("feed_forward_length")?);
    c.insert("num_hidden_layers".into(), need("block_count")?);
    let heads = need("attention.head_count")?;
    c.insert("num_attention_heads".into(), heads.clone());
    c.insert(
        "num_key_value_heads".into(),
        get("attention.head_count_kv").cloned().unwrap_or(heads),
    );
    if let Some(v) = get("attention.key_length") {
        c.insert("head_dim".into(), v.clone());
    }
    if let Some(v) = get("context_length") {
        c.insert("max_position_embeddings".into(), v.clone());
    }
    if let Some(v) = get("attention.layer_norm_rms_epsilon") {
        c.insert("rms_norm_eps".into(), v.clone());
    }
    if let Some(v) = get("rope.freq_base") {
        c.insert("rope_theta".into(), v.clone());
    }
    match get("rope.scaling.type").and_then(Value::as_str) {
        None | Some("none") => {}
        Some("linear") => {
            c.insert(
                "rope_scaling".into(),
                json!({"rope_type": "linear", "factor": need("rope.scaling.factor")?}),
            );
        }
        Some(other) => {
            return Err(Error::Gguf {
                file: h.file.clone(),
                message: format!("rope scaling `{other}` is not supported from GGUF yet"),
            });
        }
    }
    let tensor = |name: &str| h.tensors.iter().find(|t| t.name == name);
    if tensor("rope_freqs.weight").is_some() {
        return Err(Error::Gguf {
            file: h.file.clone(),
            message: "per-frequency rope factors (`rope_freqs.weight`, Llama 3.1's scaling) are \
                      not supported from GGUF yet"
                .into(),
        });
    }
    let embed = tensor("token_embd.weight").ok_or_else(|| Error::Gguf {
        file: h.file.clone(),
        message: "no tensor `token_embd.weight`".into(),
    })?;
    let vocab = get("vocab_size")
        .cloned()
        .unwrap_or_else(|| json!(embed.shape[0]));
    c.insert("vocab_size".into(), vocab);
    c.insert(
        "tie_word_embeddings".into(),
        json!(tensor("output.weight").is_none()),
    );
    if model_type == "llama" {
        c.insert(
            "attention_bias".into(),
            json!(tensor("blk.0.attn_q.bias").is_some()),
        );
    }
    for (key, field) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        if let Some(v) = h.get(key) {
            c.insert(field.into(), v.clone());
        }
    }
    Ok(Value::Object(c))
}

/// The files a Hugging Face folder would hold beside the weights, from a header read with
/// [`crate::gguf::parse_whole`]: `config.json`'s bytes and the tokenizer's files.
pub fn text_files(h: &GgufHeader) -> Result<(Vec<u8>, Option<TokenizerBytes>)> {
    let config = serde_json::to_vec(&config_json(h)?).expect("JSON values serialize");
    Ok((config, crate::gguf_tokenizer::tokenizer_files(h)?))
}

/// Top-level tensors: llama.cpp's name and transformers'.
const TOP_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// A layer's modules: llama.cpp's name and transformers'.
const LAYER_NAMES: [(&str, &str); 11] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// transformers' name for a llama.cpp tensor name (None: a tensor hubscope has no use for).
pub fn hf_name(name: &str) -> Option<String> {
    rename(name, false)
}

/// llama.cpp's name for a transformers tensor name (None: not one of the families' tensors).
pub fn gguf_name(name: &str) -> Option<String> {
    rename(name, true)
}

/// A tensor name through the name tables, from llama.cpp's to transformers' or (`to_gguf`) back.
fn rename(name: &str, to_gguf: bool) -> Option<String> {
    let pair = |&(g, hf): &(&'static str, &'static str)| if to_gguf { (hf, g) } else { (g, hf) };
    if let Some((_, to)) = TOP_NAMES.iter().map(pair).find(|(from, _)| *from == name) {
        return Some(to.to_string());
    }
    let (from_layers, to_layers) = if to_gguf {
        ("model.layers.", "blk.")
    } else {
        ("blk.", "model.layers.")
    };
    let (layer, rest) = name.strip_prefix(from_layers)?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, param) = rest.rsplit_once('.')?;
    let (_, to) = LAYER_NAMES
        .iter()
        .map(pair)
        .find(|(from, _)| *from == module)?;
    Some(format!("{to_layers}{layer}.{to}.{param}"))
}

/// Rows of a q or k projection (weight or bias) between llama.cpp's order for llama-architecture
/// files and transformers': llama.cpp stores row `h·d + 2i + j` of head `h` where transformers
/// has row `h·d + j·d/2 + i`. `to_gguf` permutes into llama.cpp's order, otherwise back. Rows
/// are whole (quantized rows too: blocks never cross a row), so this moves bytes, not values.
pub fn permute_rows(bytes: &[u8], rows: usize, heads: usize, to_gguf: bool) -> Vec<u8> {
    let row = bytes.len() / rows;
    let d = rows / heads;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let (mut from, mut to) = (h * d + 2 * i + j, h * d + j * (d / 2) + i);
                if to_gguf {
                    (from, to) = (to, from);
                }
                out[to * row..(to + 1) * row].copy_from_slice(&bytes[from * row..(from + 1) * row]);
            }
        }
    }
    out
}

/// The heads of the projection a tensor belongs to, where llama.cpp permutes its rows for the
/// llama architecture (q and k projections, weights and biases).
pub fn permuted_heads(config: &ModelConfig, tensor: &str) -> Option<usize> {
    if tensor.contains("self_attn.q_proj.") {
        Some(config.num_attention_heads)
    } else if tensor.contains("self_attn.k_proj.") {
        Some(config.num_key_value_heads)
    } else {
        None
    }
}

/// Bytes the weights of a GGUF file take once loaded for generation in `dtype` on the CPU (as
/// [`crate::feed::Feed::gguf`] loads them with `keep_blocks`): with f32 or `stored` the linear
/// weights the block kernels read stay in their blocks, with `stored` 16-bit ones stay too;
/// every other tensor is dequantized to the compute dtype.
pub fn loaded_bytes(h: &GgufHeader, dtype: WeightDtype) -> u64 {
    let compute = dtype.compute();
    let keep = compute == crate::ComputeDtype::F32 && dtype.quant().is_none();
    let per_value = if compute == crate::ComputeDtype::F32 {
        4
    } else {
        2
    };
    h.tensors
        .iter()
        .map(|t| {
            let linear =
                t.shape.len() == 2 && hf_name(&t.name).is_some_and(|n| crate::load::may_keep(&n));
            let blocks = keep && linear && crate::cpu::keeps(t.ggml_type, t.shape[1] as usize);
            let half = dtype == WeightDtype::Stored
                && linear
                && matches!(t.ggml_type, crate::quantize::F16 | crate::quantize::BF16);
            if blocks || half {
                t.bytes
            } else {
                t.shape.iter().product::<u64>() * per_value
            }
        })
        .sum()
}

impl Model {
    /// Load a GGUF file (`bytes`, all of it) of a family hubscope runs. With `keep_blocks`, on
    /// the CPU device in f32, linear weights of the types the block kernel reads stay in their
    /// blocks (memory ≈ the file); everything else is dequantized to `dtype`'s compute dtype
    /// (and, with a quantized `dtype`, float linear weights quantized to its blocks).
    pub fn from_gguf(
        config: ModelConfig,
        file: &str,
        bytes: &[u8],
        dtype: impl Into<WeightDtype>,
        device: &Device,
        keep_blocks: bool,
    ) -> Result<Self> {
        let h = match parse(file, bytes, Some(bytes.len() as u64))? {
            Parsed::Header(h) => h,
            Parsed::NeedBytes(_) => {
                return Err(Error::Gguf {
                    file: file.to_string(),
                    message: "the file ends inside its header".into(),
                });
            }
        };
        let mut feed = Feed::gguf(config, file, &h, dtype, device, keep_blocks)?;
        feed.put_whole(&[(file.to_string(), bytes)])?;
        feed.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_transformers() {
        assert_eq!(
            hf_name("blk.3.attn_k.bias").as_deref(),
            Some("model.layers.3.self_attn.k_proj.bias")
        );
        assert_eq!(hf_name("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(hf_name("blk.x.attn_k.bias"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
        for g in [
            "blk.3.attn_k.bias",
            "output.weight",
            "blk.11.ffn_down.weight",
        ] {
            assert_eq!(gguf_name(&hf_name(g).unwrap()).as_deref(), Some(g));
        }
    }

    #[test]
    fn permute_rows_matches_llama_cpp_both_ways() {
        // llama.cpp: w.reshape(heads, 2, d/2, …).swapaxes(1, 2): row h·d + 2i + j ← h·d + j·d/2 + i.
        let (heads, d) = (2, 8);
        let hf: Vec<u8> = (0..(heads * d) as u8).collect();
        let mut stored = vec![0u8; hf.len()];
        for h in 0..heads {
            for i in 0..d / 2 {
                for j in 0..2 {
                    stored[h * d + 2 * i + j] = hf[h * d + j * (d / 2) + i];
                }
            }
        }
        assert_eq!(permute_rows(&stored, heads * d, heads, false), hf);
        assert_eq!(permute_rows(&hf, heads * d, heads, true), stored);
    }
}
