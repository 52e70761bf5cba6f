//! `config.json` of a Hugging Face decoder checkpoint, validated into one [`ModelConfig`]
//! whose switches turn the single decoder into each family hubscope runs: Qwen2/2.5, Qwen3,
//! Llama, Mistral, Gemma 2, Gemma 3 (text), Phi-3 and the Qwen2/Qwen3 mixtures of experts.

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
    Mistral,
    Gemma2,
    Gemma3,
    Phi3,
    Qwen2Moe,
    Qwen3Moe,
}

impl Family {
    /// Every family with its `model_type`.
    pub const ALL: [(Family, &'static str); 9] = [
        (Family::Qwen2, "qwen2"),
        (Family::Qwen3, "qwen3"),
        (Family::Llama, "llama"),
        (Family::Mistral, "mistral"),
        (Family::Gemma2, "gemma2"),
        (Family::Gemma3, "gemma3_text"),
        (Family::Phi3, "phi3"),
        (Family::Qwen2Moe, "qwen2_moe"),
        (Family::Qwen3Moe, "qwen3_moe"),
    ];

    /// The `model_type` values hubscope runs, for messages.
    pub fn supported() -> String {
        let names: Vec<&str> = Family::ALL.iter().map(|(_, n)| *n).collect();
        names.join(", ")
    }

    /// The class-name prefix transformers uses (`Qwen2ForCausalLM`, `Qwen2Attention`, ...).
    pub fn class_prefix(self) -> &'static str {
        match self {
            Family::Qwen2 => "Qwen2",
            Family::Qwen3 => "Qwen3",
            Family::Llama => "Llama",
            Family::Mistral => "Mistral",
            Family::Gemma2 => "Gemma2",
            Family::Gemma3 => "Gemma3",
            Family::Phi3 => "Phi3",
            Family::Qwen2Moe => "Qwen2Moe",
            Family::Qwen3Moe => "Qwen3Moe",
        }
    }
}

/// The feed-forward activation (`hidden_act` / Gemma's `hidden_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU's `silu`.
    Silu,
    /// GeGLU with the tanh approximation (`gelu_pytorch_tanh`), as Gemma uses.
    GeluTanh,
}

/// A sparse mixture-of-experts feed-forward (Qwen2-MoE, Qwen3-MoE).
#[derive(Debug, Clone, PartialEq)]
pub struct Moe {
    pub num_experts: usize,
    /// `num_experts_per_tok`.
    pub top_k: usize,
    /// Renormalise the top-k routing weights to sum to one.
    pub norm_topk_prob: bool,
    /// `moe_intermediate_size`: each expert's width.
    pub intermediate_size: usize,
    /// Qwen2-MoE's always-on expert (with a sigmoid gate), when the config has one.
    pub shared_expert_intermediate_size: Option<usize>,
    /// Which layers are sparse (the others use a dense MLP of `intermediate_size`).
    pub sparse_layers: Vec<bool>,
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
    /// Phi-3's `longrope`: per-frequency factors, the short ones up to
    /// `original_max_position_embeddings`, the long ones past it; cos/sin scaled by
    /// `attention_factor`.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
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
    /// How many leading dimensions of each head rotate (`partial_rotary_factor` × head_dim).
    pub rotary_dim: usize,
    /// Gemma 3: sliding layers rotate with this base and no scaling.
    pub rope_local_theta: Option<f64>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (always on for Qwen2).
    pub qkv_bias: bool,
    /// Bias on o_proj.
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Per-layer sliding window (None = full attention).
    pub layer_windows: Vec<Option<usize>>,
    pub hidden_act: Activation,
    /// Multiplies q·kᵀ: `head_dim^-0.5`, or Gemma's `query_pre_attn_scalar^-0.5`.
    pub attn_scale: f64,
    /// Gemma 2: `cap · tanh(x / cap)` on attention scores and on the final logits.
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    /// Gemma: embeddings times `sqrt(hidden_size)`; RMSNorm scales by `1 + weight`; norms
    /// after attention and around the feed-forward ("sandwich").
    pub gemma_norms: bool,
    /// RMSNorm on each head's q and k (Qwen3, Qwen3-MoE, Gemma 3).
    pub qk_norm: bool,
    /// Phi-3: one `qkv_proj` and one `gate_up_proj` instead of separate projections.
    pub fused_projections: bool,
    /// Phi-3's `resid_pdrop`, shown in its module tree (dropout is off at inference).
    pub resid_pdrop: Option<f64>,
    pub moe: Option<Moe>,
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
    qkv_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    rope_local_base_freq: Option<f64>,
    partial_rotary_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
    sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    sliding_window_pattern_private: Option<usize>,
    resid_pdrop: Option<f64>,
    num_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    norm_topk_prob: Option<bool>,
    moe_intermediate_size: Option<usize>,
    shared_expert_intermediate_size: Option<usize>,
    decoder_sparse_step: Option<usize>,
    mlp_only_layers: Option<Vec<usize>>,
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

/// A number transformers reads with a class default: absent → `default`, `null` → None.
fn with_default(raw: &Value, key: &str, default: Option<f64>) -> Result<Option<f64>> {
    match raw.get(key) {
        None => Ok(default),
        Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
            _ => Err(invalid(key, "must be a positive number or null")),
        },
    }
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
        let family = Family::ALL
            .iter()
            .find(|(_, n)| *n == model_type)
            .map(|(f, _)| *f)
            .ok_or_else(|| Error::UnsupportedModelType(model_type.clone()))?;
        let gemma = matches!(family, Family::Gemma2 | Family::Gemma3);
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
        // Gemma's configs leave out what equals the class default (head_dim 256).
        let head_dim = match r.head_dim.or(gemma.then_some(256)) {
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
        // Gemma names it hidden_activation (and older Gemma configs carry a stale hidden_act).
        let (act_field, act) = match (&r.hidden_activation, &r.hidden_act) {
            (Some(a), _) if gemma => ("hidden_activation", a.as_str()),
            (_, Some(a)) => ("hidden_act", a.as_str()),
            _ => (
                "hidden_act",
                if gemma { "gelu_pytorch_tanh" } else { "silu" },
            ),
        };
        let hidden_act = match act {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            other => {
                return Err(invalid(
                    act_field,
                    format!("`{other}` is not supported (silu, gelu_pytorch_tanh)"),
                ));
            }
        };
        let rotary_dim = match r.partial_rotary_factor {
            None => head_dim,
            Some(f) if f > 0.0 && f <= 1.0 => {
                let d = (head_dim as f64 * f) as usize;
                if d == 0 || d % 2 != 0 {
                    return Err(invalid(
                        "partial_rotary_factor",
                        format!("{f} of head_dim {head_dim} is not an even number of dimensions"),
                    ));
                }
                d
            }
            Some(f) => {
                return Err(invalid(
                    "partial_rotary_factor",
                    format!("{f} is not in (0, 1]"),
                ));
            }
        };

        // rope: transformers 4.x puts rope_theta/rope_scaling at top level, 5.x in rope_parameters.
        let params = r.rope_parameters.as_ref().filter(|v| v.is_object());
        let rope_theta = r
            .rope_theta
            .or_else(|| {
                params
                    .and_then(|p| p.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(if family == Family::Gemma3 {
                1e6
            } else {
                10000.0
            });
        if !(rope_theta.is_finite() && rope_theta > 0.0) {
            return Err(invalid("rope_theta", "must be a positive number"));
        }
        let scaling_src = match &r.rope_scaling {
            Some(v) if v.is_object() => Some(("rope_scaling", v)),
            _ => params.map(|p| ("rope_parameters", p)),
        };
        let max_position_embeddings = bounded(
            Some(r.max_position_embeddings.unwrap_or(2048)),
            "max_position_embeddings",
            1 << 28,
        )?;
        let rope_scaling = match scaling_src {
            None => RopeScaling::None,
            Some((field, v)) => parse_rope_scaling(
                field,
                v,
                rotary_dim,
                max_position_embeddings,
                r.original_max_position_embeddings,
            )?,
        };
        let positive = |v: Option<f64>, f: &str| -> Result<Option<f64>> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => {
                    Err(invalid(f, "must be a positive number"))
                }
                _ => Ok(v),
            }
        };
        let rope_local_theta = match family {
            Family::Gemma3 => {
                Some(positive(r.rope_local_base_freq, "rope_local_base_freq")?.unwrap_or(10000.0))
            }
            _ => None,
        };

        // Which layers use a sliding window. `layer_types` (transformers >= 4.53) is explicit;
        // older Qwen configs derive it from use_sliding_window / max_window_layers.
        // Class defaults where a config leaves the window out: 4096 for Mistral and Gemma.
        let window = match family {
            Family::Mistral | Family::Gemma2 | Family::Gemma3 => {
                with_default(&raw_value, "sliding_window", Some(4096.0))?.map(|w| w as usize)
            }
            _ => r.sliding_window,
        };
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
                .map(|i| match family {
                    // Mistral and Phi-3 slide on every layer when a window is set.
                    Family::Mistral | Family::Phi3 => window,
                    // Gemma without layer_types: every n-th layer is global (2 for Gemma 2,
                    // sliding_window_pattern for Gemma 3, 6 by default).
                    Family::Gemma2 | Family::Gemma3 => {
                        let n = match family {
                            Family::Gemma2 => 2,
                            _ => r
                                .sliding_window_pattern
                                .or(r.sliding_window_pattern_private)
                                .unwrap_or(6),
                        };
                        if n == 0 || (i + 1) % n != 0 {
                            window
                        } else {
                            None
                        }
                    }
                    _ => {
                        let sliding = r.use_sliding_window.unwrap_or(false)
                            && i >= r.max_window_layers.unwrap_or(num_hidden_layers);
                        if sliding { window } else { None }
                    }
                })
                .collect(),
        };

        let attention_bias = r.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 | Family::Qwen2Moe => (r.qkv_bias.unwrap_or(true), false),
            Family::Phi3 => (false, false),
            _ => (attention_bias, attention_bias),
        };
        let mlp_bias = match family {
            Family::Llama | Family::Mistral => r.mlp_bias.unwrap_or(false),
            _ => false,
        };
        let attn_scale = match (gemma, r.query_pre_attn_scalar.or(gemma.then_some(256.0))) {
            (true, Some(s)) if s.is_finite() && s > 0.0 => s.powf(-0.5),
            (true, Some(_)) => {
                return Err(invalid(
                    "query_pre_attn_scalar",
                    "must be a positive number",
                ));
            }
            _ => (head_dim as f64).powf(-0.5),
        };
        let moe = match family {
            Family::Qwen2Moe | Family::Qwen3Moe => {
                let num_experts = bounded(r.num_experts, "num_experts", 1 << 12)?;
                let top_k = bounded(r.num_experts_per_tok, "num_experts_per_tok", num_experts)?;
                let step = bounded(
                    Some(r.decoder_sparse_step.unwrap_or(1)),
                    "decoder_sparse_step",
                    4096,
                )?;
                let dense = r.mlp_only_layers.clone().unwrap_or_default();
                Some(Moe {
                    num_experts,
                    top_k,
                    norm_topk_prob: r.norm_topk_prob.unwrap_or(false),
                    intermediate_size: bounded(
                        r.moe_intermediate_size,
                        "moe_intermediate_size",
                        1 << 20,
                    )?,
                    shared_expert_intermediate_size: match family {
                        Family::Qwen2Moe => Some(bounded(
                            r.shared_expert_intermediate_size,
                            "shared_expert_intermediate_size",
                            1 << 20,
                        )?),
                        _ => None,
                    },
                    sparse_layers: (0..num_hidden_layers)
                        .map(|i| !dense.contains(&i) && (i + 1) % step == 0)
                        .collect(),
                })
            }
            _ => None,
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
            rotary_dim,
            rope_local_theta,
            max_position_embeddings,
            // The class default when absent: Gemma ties, the others do not.
            tie_word_embeddings: r.tie_word_embeddings.unwrap_or(gemma),
            qkv_bias,
            o_bias,
            mlp_bias,
            layer_windows,
            hidden_act,
            attn_scale,
            // Gemma 2's class defaults are 50 and 30; Gemma 3's are off.
            attn_logit_softcapping: match family {
                Family::Gemma2 => with_default(&raw_value, "attn_logit_softcapping", Some(50.0))?,
                Family::Gemma3 => with_default(&raw_value, "attn_logit_softcapping", None)?,
                _ => None,
            },
            final_logit_softcapping: match family {
                Family::Gemma2 => with_default(&raw_value, "final_logit_softcapping", Some(30.0))?,
                Family::Gemma3 => with_default(&raw_value, "final_logit_softcapping", None)?,
                _ => None,
            },
            gemma_norms: gemma,
            qk_norm: matches!(family, Family::Qwen3 | Family::Qwen3Moe | Family::Gemma3),
            fused_projections: family == Family::Phi3,
            resid_pdrop: match family {
                Family::Phi3 => Some(r.resid_pdrop.unwrap_or(0.0)),
                _ => None,
            },
            moe,
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

    /// Every layer's cache: full attention, or its sliding window.
    pub fn kv_layout(&self) -> crate::kv::KvLayout {
        use crate::kv::LayerCache;
        crate::kv::KvLayout {
            layers: self
                .layer_windows
                .iter()
                .map(|w| w.map_or(LayerCache::Full, LayerCache::Window))
                .collect(),
            values_per_token: 2 * self.num_key_value_heads * self.head_dim,
            decompressed_values_per_token: None,
            recurrent_state_values: None,
        }
    }

    /// Key+value cache bytes per token for one sequence at `bytes_per_value` (every layer).
    pub fn kv_bytes_per_token(&self, bytes_per_value: usize) -> usize {
        self.kv_layout().attention_bytes_per_token(bytes_per_value) as usize
    }

    /// Key+value cache bytes for `context` tokens of one sequence: a sliding-window layer
    /// holds at most its window (as hubscope's cache keeps it).
    pub fn kv_bytes(&self, context: usize, bytes_per_value: usize) -> u64 {
        self.kv_layout().bytes(context, bytes_per_value)
    }

    /// Parameters one token runs through: all, less the experts it does not choose.
    pub fn active_parameters(&self, total: u64) -> u64 {
        let Some(m) = &self.moe else {
            return total;
        };
        let per_expert = 3 * self.hidden_size * m.intermediate_size;
        let sparse = m.sparse_layers.iter().filter(|s| **s).count();
        total - (sparse * (m.num_experts - m.top_k) * per_expert) as u64
    }

    /// Feed-forward width one token computes in layer `layer` (a mixture: top-k experts plus
    /// the shared one).
    pub fn ffn_width(&self, layer: usize) -> usize {
        match self.moe.as_ref().filter(|m| m.sparse_layers[layer]) {
            Some(m) => {
                m.top_k * m.intermediate_size + m.shared_expert_intermediate_size.unwrap_or(0)
            }
            None => self.intermediate_size,
        }
    }
}

fn parse_rope_scaling(
    field: &str,
    v: &Value,
    rotary_dim: usize,
    max_position_embeddings: usize,
    original_max: Option<usize>,
) -> Result<RopeScaling> {
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
        "longrope" | "su" => {
            let factors = |k: &str| -> Result<Vec<f64>> {
                let list: Option<Vec<f64>> = v
                    .get(k)
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().map(Value::as_f64).collect());
                let list = list.ok_or_else(|| missing(&format!("{field}.{k}")))?;
                if list.len() != rotary_dim / 2 || list.iter().any(|f| !(*f > 0.0)) {
                    return Err(invalid(
                        &format!("{field}.{k}"),
                        format!(
                            "needs {} positive factors (rotary dimensions / 2), has {}",
                            rotary_dim / 2,
                            list.len()
                        ),
                    ));
                }
                Ok(list)
            };
            // As transformers: with original_max_position_embeddings the factor is the ratio
            // of the two lengths, and the attention factor follows from it.
            let (original, factor) = match original_max {
                Some(o) if o > 0 => (o, max_position_embeddings as f64 / o as f64),
                _ => (
                    max_position_embeddings,
                    v.get("factor").and_then(Value::as_f64).unwrap_or(1.0),
                ),
            };
            let attention_factor = match v.get("attention_factor").and_then(Value::as_f64) {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
            };
            Ok(RopeScaling::LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                original_max_position_embeddings: original,
                attention_factor,
            })
        }
        other => Err(invalid(
            &format!("{field}.rope_type"),
            format!("`{other}` is not supported (default, linear, llama3, longrope)"),
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
