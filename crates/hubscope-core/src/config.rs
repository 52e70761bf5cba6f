//! `config.json` of a Hugging Face decoder checkpoint, validated into one [`ModelConfig`]
//! that switches the single decoder between the Qwen2/Qwen2.5, Qwen3 and Llama families.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

const FILE: &str = "config.json";

/// The decoder families hubscope runs. They differ only in switches of the one decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Qwen2,
    Qwen3,
    Llama,
}

impl Family {
    /// The class-name prefix transformers uses (`Qwen2ForCausalLM`, `Qwen2Attention`, ...).
    pub fn class_prefix(self) -> &'static str {
        match self {
            Family::Qwen2 => "Qwen2",
            Family::Qwen3 => "Qwen3",
            Family::Llama => "Llama",
        }
    }
}

/// RoPE frequency scaling. `Llama3` is the `rope_type = "llama3"` schedule of Llama 3.1+.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// The validated model configuration. Field names follow `config.json`.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub family: Family,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (always on for Qwen2).
    pub qkv_bias: bool,
    /// Bias on o_proj.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-layer sliding window (None = full attention).
    pub layer_windows: Vec<Option<usize>>,
    /// The dtype the checkpoint declares (`torch_dtype` or `dtype`), e.g. "bfloat16".
    pub torch_dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// The untouched JSON, for writing the config back out (export).
    pub raw: Value,
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    layer_types: Option<Vec<String>>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    torch_dtype: Option<String>,
    dtype: Option<String>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    pad_token_id: Option<Value>,
}

fn missing(field: &str) -> Error {
    Error::MissingField {
        file: FILE.into(),
        field: field.into(),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::InvalidField {
        file: FILE.into(),
        field: field.into(),
        message: message.into(),
    }
}

/// Token ids in config files are an int, a list of ints, or null.
pub(crate) fn token_ids(file: &str, field: &str, v: &Option<Value>) -> Result<Vec<u32>> {
    let bad = || Error::InvalidField {
        file: file.into(),
        field: field.into(),
        message: "expected a token id or a list of token ids".into(),
    };
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(bad)? as u32]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().map(|n| n as u32).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

impl ModelConfig {
    /// Parse and validate `config.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw_value: Value = serde_json::from_slice(bytes).map_err(|e| Error::json(FILE, e))?;
        let r: Raw = serde_json::from_value(raw_value.clone()).map_err(|e| Error::json(FILE, e))?;

        let model_type = r.model_type.clone().ok_or_else(|| missing("model_type"))?;
        let family = match model_type.as_str() {
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "llama" => Family::Llama,
            other => return Err(Error::UnsupportedModelType(other.to_string())),
        };
        let req = |v: Option<usize>, f: &str| -> Result<usize> {
            match v {
                None => Err(missing(f)),
                Some(0) => Err(invalid(f, "must be greater than 0")),
                Some(x) => Ok(x),
            }
        };
        // Sizes far past any real checkpoint are refused: they would only ask for impossible
        // allocations (an abort, not an error) in everything derived from the config.
        let bounded = |v: Option<usize>, f: &str, max: usize| -> Result<usize> {
            let x = req(v, f)?;
            if x > max {
                return Err(invalid(
                    f,
                    format!("{x} is implausibly large (at most {max})"),
                ));
            }
            Ok(x)
        };
        let vocab_size = bounded(r.vocab_size, "vocab_size", 1 << 24)?;
        let hidden_size = bounded(r.hidden_size, "hidden_size", 1 << 17)?;
        let intermediate_size = bounded(r.intermediate_size, "intermediate_size", 1 << 20)?;
        let num_hidden_layers = bounded(r.num_hidden_layers, "num_hidden_layers", 4096)?;
        let num_attention_heads = bounded(r.num_attention_heads, "num_attention_heads", 4096)?;
        let num_key_value_heads = bounded(
            Some(r.num_key_value_heads.unwrap_or(num_attention_heads)),
            "num_key_value_heads",
            4096,
        )?;
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(invalid(
                "num_key_value_heads",
                format!(
                    "{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"
                ),
            ));
        }
        let head_dim = match r.head_dim {
            Some(h) => bounded(Some(h), "head_dim", 8192)?,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(invalid(
                        "head_dim",
                        "absent, and hidden_size is not a multiple of num_attention_heads",
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim % 2 != 0 {
            return Err(invalid("head_dim", "must be even for rotary embeddings"));
        }
        if let Some(act) = &r.hidden_act {
            if act != "silu" {
                return Err(invalid(
                    "hidden_act",
                    format!("`{act}` is not supported (silu only)"),
                ));
            }
        }

        // rope: transformers 4.x puts rope_theta/rope_scaling at top level, 5.x in rope_parameters.
        let params = r.rope_parameters.as_ref().filter(|v| v.is_object());
        let rope_theta = r
            .rope_theta
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10000.0);
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(invalid("rope_theta", "must be a positive number"));
        }
        let scaling_src = match &r.rope_scaling {
            Some(v) if v.is_object() => Some(("rope_scaling", v)),
            _ => params.map(|p| ("rope_parameters", p)),
        };
        let rope_scaling = match scaling_src {
            None => RopeScaling::None,
            Some((field, v)) => parse_rope_scaling(field, v)?,
        };

        let max_position_embeddings = bounded(
            Some(r.max_position_embeddings.unwrap_or(2048)),
            "max_position_embeddings",
            1 << 28,
        )?;

        // Which layers use a sliding window. `layer_types` (transformers >= 4.53) is explicit;
        // older Qwen configs derive it from use_sliding_window / max_window_layers.
        let window = r.sliding_window;
        if window == Some(0) {
            return Err(invalid("sliding_window", "must be greater than 0"));
        }
        let layer_windows: Vec<Option<usize>> = match &r.layer_types {
            Some(types) => {
                if types.len() != num_hidden_layers {
                    return Err(invalid(
                        "layer_types",
                        format!(
                            "has {} entries, num_hidden_layers is {num_hidden_layers}",
                            types.len()
                        ),
                    ));
                }
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        "full_attention" => Ok(None),
                        "sliding_attention" => {
                            window.map(Some).ok_or_else(|| missing("sliding_window"))
                        }
                        other => Err(invalid(
                            "layer_types",
                            format!("unknown layer type `{other}`"),
                        )),
                    })
                    .collect::<Result<_>>()?
            }
            None => (0..num_hidden_layers)
                .map(|i| {
                    let sliding = r.use_sliding_window.unwrap_or(false)
                        && i >= r.max_window_layers.unwrap_or(num_hidden_layers);
                    if sliding { window } else { None }
                })
                .collect(),
        };

        let attention_bias = r.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 => (true, false),
            Family::Qwen3 | Family::Llama => (attention_bias, attention_bias),
        };
        let mlp_bias = match family {
            Family::Llama => r.mlp_bias.unwrap_or(false),
            _ => false,
        };

        let eos_token_ids = token_ids(FILE, "eos_token_id", &r.eos_token_id)?;
        let bos_token_id = token_ids(FILE, "bos_token_id", &r.bos_token_id)?
            .first()
            .copied();
        let pad_token_id = token_ids(FILE, "pad_token_id", &r.pad_token_id)?
            .first()
            .copied();

        Ok(ModelConfig {
            family,
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: r.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings: r.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            mlp_bias,
            layer_windows,
            torch_dtype: r.torch_dtype.or(r.dtype),
            bos_token_id,
            eos_token_ids,
            pad_token_id,
            raw: raw_value,
        })
    }

    /// Number of query heads sharing one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Key+value cache bytes per token for one sequence at `bytes_per_value`.
    pub fn kv_bytes_per_token(&self, bytes_per_value: usize) -> usize {
        2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * bytes_per_value
    }
}

fn parse_rope_scaling(field: &str, v: &Value) -> Result<RopeScaling> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| missing(&format!("{field}.{k}")))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(invalid(
            &format!("{field}.rope_type"),
            format!("`{other}` is not supported (default, linear, llama3)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_rope_and_dtype_spellings() {
        let c = ModelConfig::from_json(
            br#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"torch_dtype":"bfloat16",
            "rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8192},"rope_theta":500000.0,
            "eos_token_id":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(c.num_key_value_heads, 2);
        assert_eq!(c.head_dim, 4);
        assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { .. }));
    }

    #[test]
    fn rope_parameters_and_errors() {
        let c = ModelConfig::from_json(
            br#"{"model_type":"qwen3","vocab_size":10,"hidden_size":8,"intermediate_size":16,
            "num_hidden_layers":1,"num_attention_heads":2,"dtype":"float32",
            "rope_parameters":{"rope_type":"default","rope_theta":1000000.0}}"#,
        )
        .unwrap();
        assert_eq!(c.rope_theta, 1e6);
        let e = ModelConfig::from_json(br#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(e.to_string().contains("gpt2"), "{e}");
        let e = ModelConfig::from_json(br#"{"model_type":"llama","vocab_size":3}"#).unwrap_err();
        assert!(e.to_string().contains("hidden_size"), "{e}");
        let e = ModelConfig::from_json(b"{not json").unwrap_err();
        assert!(e.to_string().starts_with("config.json"), "{e}");
    }
}
