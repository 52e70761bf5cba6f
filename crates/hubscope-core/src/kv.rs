//! The KV cache a model holds per layer, read from any config.json: full attention grows by
//! one key and value per token, a sliding (or chunked) window holds at most the window, a
//! multi-head latent attention layer (MLA, DeepSeek) the compressed key-value and the rope key,
//! a recurrent layer (Mamba, Gated DeltaNet, short convolutions) a fixed state, and an MLP-only
//! layer nothing. The families hubscope runs build theirs from the parsed config
//! ([`crate::ModelConfig::kv_layout`]); every other family from the config's own fields here.

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// What one decoder layer keeps between tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerCache {
    /// One entry per token.
    Full,
    /// At most this many entries (sliding window, chunked attention).
    Window(usize),
    /// A fixed-size recurrent state, whatever the context.
    Recurrent,
    /// No attention and no state (an MLP-only layer of a hybrid pattern).
    Nothing,
}

/// Every layer's cache and the values one entry holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KvLayout {
    pub layers: Vec<LayerCache>,
    /// Values one token adds to one attention layer, keys and values together (MLA: the
    /// compressed key-value plus the rope key, as vLLM, SGLang and llama.cpp cache it).
    pub values_per_token: usize,
    /// MLA only: the values per token and layer of the decompressed keys and values, as
    /// transformers caches them.
    pub decompressed_values_per_token: Option<usize>,
    /// Values of one recurrent layer's state, where the config names its sizes in a form
    /// hubscope reads (Mamba: `mamba_*`; Gated DeltaNet: `linear_*`); `None` otherwise.
    pub recurrent_state_values: Option<usize>,
}

impl KvLayout {
    /// Layers of `kind` (windows of any size count as one kind).
    pub fn count(&self, kind: fn(&LayerCache) -> bool) -> usize {
        self.layers.iter().filter(|l| kind(l)).count()
    }

    /// Bytes for `context` tokens of one sequence at `bytes_per_value`, at the peak of a step:
    /// a window layer holds its window, recurrent layers their state (when known).
    /// (Saturating: a config's sizes are bounded, a caller's context is not.)
    pub fn bytes(&self, context: usize, bytes_per_value: usize) -> u64 {
        let per_token = self.values_per_token as u64;
        self.layers
            .iter()
            .map(|l| match l {
                LayerCache::Full => (context as u64).saturating_mul(per_token),
                LayerCache::Window(w) => (context.min(*w) as u64).saturating_mul(per_token),
                LayerCache::Recurrent => self.recurrent_state_values.unwrap_or(0) as u64,
                LayerCache::Nothing => 0,
            })
            .fold(0u64, u64::saturating_add)
            .saturating_mul(bytes_per_value as u64)
    }

    /// Bytes one more token adds once every window is full: the layers that attend to all.
    pub fn growth_per_token(&self, bytes_per_value: usize) -> u64 {
        let full = self.count(|l| *l == LayerCache::Full) as u64;
        full * self.values_per_token as u64 * bytes_per_value as u64
    }

    /// Bytes per token if every attention layer grew (the usual "KV per token" figure).
    pub fn attention_bytes_per_token(&self, bytes_per_value: usize) -> u64 {
        let attention =
            self.count(|l| matches!(l, LayerCache::Full | LayerCache::Window(_))) as u64;
        attention * self.values_per_token as u64 * bytes_per_value as u64
    }

    /// Any family's cache from its config.json. Field names follow transformers' configs:
    /// `layer_types`, `layers_block_type`, `attn_layer_period`/`attn_layer_offset` (Jamba),
    /// `attn_layer_indices` (Bamba), `hybrid_override_pattern` (Nemotron-H), `full_attn_idxs`
    /// (LFM2); without them every layer attends, within `sliding_window` where one is set.
    pub fn from_config(raw: &Value) -> Result<KvLayout> {
        let layers = usize_of(
            raw,
            &["num_hidden_layers", "n_layer", "num_layers", "n_layers"],
        )?
        .ok_or_else(|| missing("num_hidden_layers"))?;
        if layers > MAX_LAYERS {
            return Err(invalid("num_hidden_layers", "too large"));
        }
        let heads = usize_of(raw, &["num_attention_heads", "n_head", "num_heads"])?
            .ok_or_else(|| missing("num_attention_heads"))?;
        if heads == 0 {
            return Err(invalid("num_attention_heads", "must be at least 1"));
        }
        let kv_heads = match usize_of(raw, &["num_key_value_heads", "num_kv_heads", "n_head_kv"])? {
            Some(k) => k,
            None if raw["multi_query"].as_bool() == Some(true) => 1,
            None => heads,
        };
        let head_dim = match usize_of(raw, &["head_dim"])? {
            Some(d) => d,
            None => {
                usize_of(raw, &["hidden_size", "n_embd", "d_model"])?
                    .ok_or_else(|| missing("hidden_size"))?
                    / heads
            }
        };
        let latent = usize_of(raw, &["kv_lora_rank"])?;
        let (values_per_token, decompressed_values_per_token) = match latent {
            Some(rank) => {
                let rope = usize_of(raw, &["qk_rope_head_dim"])?
                    .ok_or_else(|| missing("qk_rope_head_dim"))?;
                let nope = usize_of(raw, &["qk_nope_head_dim"])?.unwrap_or(0);
                let v = usize_of(raw, &["v_head_dim"])?.unwrap_or(head_dim);
                let decompressed = heads as u128 * (nope + rope + v) as u128;
                (
                    rank + rope,
                    Some(bounded(decompressed, "num_attention_heads")?),
                )
            }
            None => (
                bounded(
                    2 * kv_heads as u128 * head_dim as u128,
                    "num_key_value_heads",
                )?,
                None,
            ),
        };
        let window = usize_of(raw, &["sliding_window"])?
            .filter(|_| raw["use_sliding_window"].as_bool() != Some(false));
        let chunk = usize_of(raw, &["attention_chunk_size"])?;
        let attention = |w: Option<usize>, field: &str| -> Result<LayerCache> {
            w.map(LayerCache::Window).ok_or_else(|| missing(field))
        };
        let kinds: Vec<LayerCache> = if let Some(types) = raw["layer_types"].as_array() {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str().unwrap_or_default() {
                    "full_attention" | "attention" => Ok(LayerCache::Full),
                    "sliding_attention" => attention(window, "sliding_window"),
                    "chunked_attention" => attention(chunk, "attention_chunk_size"),
                    "linear_attention" | "mamba" | "mamba2" | "conv" | "recurrent" => {
                        Ok(LayerCache::Recurrent)
                    }
                    other => Err(invalid(
                        &format!("layer_types[{i}]"),
                        format!("unknown layer type `{other}`"),
                    )),
                })
                .collect::<Result<_>>()?
        } else if let Some(types) = raw["layers_block_type"].as_array() {
            types
                .iter()
                .enumerate()
                .map(|(i, t)| match t.as_str().unwrap_or_default() {
                    "attention" => Ok(LayerCache::Full),
                    "mamba" | "mamba2" => Ok(LayerCache::Recurrent),
                    other => Err(invalid(
                        &format!("layers_block_type[{i}]"),
                        format!("unknown layer type `{other}`"),
                    )),
                })
                .collect::<Result<_>>()?
        } else if let Some(pattern) = raw["hybrid_override_pattern"].as_str() {
            pattern
                .chars()
                .map(|c| match c {
                    '*' => Ok(LayerCache::Full),
                    'M' => Ok(LayerCache::Recurrent),
                    '-' | 'E' => Ok(LayerCache::Nothing),
                    other => Err(invalid(
                        "hybrid_override_pattern",
                        format!("unknown layer `{other}`"),
                    )),
                })
                .collect::<Result<_>>()?
        } else if let Some(indices) = attention_indices(raw)? {
            (0..layers)
                .map(|i| match indices.contains(&i) {
                    true => LayerCache::Full,
                    false => LayerCache::Recurrent,
                })
                .collect()
        } else if let Some(period) = usize_of(raw, &["attn_layer_period"])? {
            if period == 0 {
                return Err(invalid("attn_layer_period", "must be at least 1"));
            }
            let offset = usize_of(raw, &["attn_layer_offset"])?.unwrap_or(0);
            (0..layers)
                .map(|i| match i % period == offset {
                    true => LayerCache::Full,
                    false => LayerCache::Recurrent,
                })
                .collect()
        } else {
            let all = window.map_or(LayerCache::Full, LayerCache::Window);
            vec![all; layers]
        };
        if kinds.len() != layers {
            return Err(invalid(
                "num_hidden_layers",
                format!("is {layers}, the layer pattern names {}", kinds.len()),
            ));
        }
        if kinds.contains(&LayerCache::Window(0)) {
            return Err(invalid("sliding_window", "must be greater than 0"));
        }
        Ok(KvLayout {
            layers: kinds,
            values_per_token,
            decompressed_values_per_token,
            recurrent_state_values: recurrent_state(raw)?,
        })
    }
}

/// `attn_layer_indices` (Bamba) or `full_attn_idxs` (LFM2): the attention layers of a hybrid.
fn attention_indices(raw: &Value) -> Result<Option<Vec<usize>>> {
    for field in ["attn_layer_indices", "full_attn_idxs"] {
        if let Some(list) = raw[field].as_array() {
            return list
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|i| i as usize)
                        .ok_or_else(|| invalid(field, "expected layer indices"))
                })
                .collect::<Result<_>>()
                .map(Some);
        }
    }
    Ok(None)
}

/// One recurrent layer's state: Mamba (Jamba) holds `d_inner × (d_conv + d_state)` with
/// `d_inner = mamba_expand × hidden_size`; Gated DeltaNet (Qwen3-Next) its convolution over the
/// keys, queries and values (`(2 × key heads × key dim + value heads × value dim) × kernel`)
/// and one `key dim × value dim` matrix per value head.
fn recurrent_state(raw: &Value) -> Result<Option<usize>> {
    let get = |f: &str| usize_of(raw, &[f]);
    if let (Some(state), Some(conv), Some(expand)) = (
        get("mamba_d_state")?,
        get("mamba_d_conv")?,
        get("mamba_expand")?,
    ) {
        let hidden = get("hidden_size")?.ok_or_else(|| missing("hidden_size"))? as u128;
        let values = expand as u128 * hidden * (conv + state) as u128;
        return bounded(values, "mamba_expand").map(Some);
    }
    if let (Some(kh), Some(kd), Some(vh), Some(vd), Some(kernel)) = (
        get("linear_num_key_heads")?,
        get("linear_key_head_dim")?,
        get("linear_num_value_heads")?,
        get("linear_value_head_dim")?,
        get("linear_conv_kernel_dim")?,
    ) {
        let (kh, kd, vh, vd, kernel) = (
            kh as u128,
            kd as u128,
            vh as u128,
            vd as u128,
            kernel as u128,
        );
        let values = (2 * kh * kd + vh * vd) * kernel + vh * kd * vd;
        return bounded(values, "linear_conv_kernel_dim").map(Some);
    }
    Ok(None)
}

/// Largest size field read: products of a few of them stay far inside 64 bits, and
/// `MAX_VALUES` bounds what one layer's entry or state may hold.
const MAX_FIELD: u64 = 1 << 24;
const MAX_VALUES: u128 = 1 << 31;
const MAX_LAYERS: usize = 1 << 16;

/// The first of `names` present and not null, as a count (at most 2^24).
fn usize_of(raw: &Value, names: &[&str]) -> Result<Option<usize>> {
    for n in names {
        match raw.get(*n) {
            None | Some(Value::Null) => continue,
            Some(v) => {
                return match v.as_u64() {
                    Some(x) if x <= MAX_FIELD => Ok(Some(x as usize)),
                    Some(_) => Err(invalid(n, "too large")),
                    None => Err(invalid(n, "expected a non-negative integer")),
                };
            }
        }
    }
    Ok(None)
}

/// `a × b (+ …)` computed in 128 bits and bounded by `MAX_VALUES`.
fn bounded(values: u128, field: &str) -> Result<usize> {
    if values > MAX_VALUES {
        return Err(invalid(field, "sizes too large"));
    }
    Ok(values as usize)
}

fn missing(field: &str) -> Error {
    Error::MissingField {
        file: "config.json".into(),
        field: field.into(),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::InvalidField {
        file: "config.json".into(),
        field: field.into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hybrid_patterns_and_latent_caches_are_read_from_the_config() {
        let jamba = json!({"num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "hidden_size": 64, "attn_layer_period": 2,
            "attn_layer_offset": 1, "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2});
        let k = KvLayout::from_config(&jamba).unwrap();
        use LayerCache::*;
        assert_eq!(k.layers, [Recurrent, Full, Recurrent, Full]);
        assert_eq!(k.recurrent_state_values, Some(128 * 12));
        assert_eq!(k.bytes(10, 2), (2 * 10 * 64 + 2 * 1536) * 2);
        let nemotron = json!({"num_hidden_layers": 3, "num_attention_heads": 4,
            "hidden_size": 64, "hybrid_override_pattern": "M-*"});
        let k = KvLayout::from_config(&nemotron).unwrap();
        assert_eq!(k.layers, [Recurrent, Nothing, Full]);
        let bad = json!({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64,
            "layer_types": ["full_attention", "sliding"]});
        let e = KvLayout::from_config(&bad).unwrap_err().to_string();
        assert!(
            e.contains("layer_types[1]") && e.contains("`sliding`"),
            "{e}"
        );
    }
}
