//! The memory planner: what a model needs to run and to fine-tune, per dtype, from its config
//! alone (parameter counts come from the module tree, exact), beside the rule of thumb people
//! use and how far that is off; and which tensors exceed the browser's WebGPU limits.

use serde::Serialize;

use crate::config::ModelConfig;
use crate::structure::model_tree;

/// WebGPU's default `maxStorageBufferBindingSize` (128 MiB) and `maxBufferSize` (256 MiB).
pub const WEBGPU_DEFAULT_BINDING: u64 = 128 << 20;
pub const WEBGPU_DEFAULT_BUFFER: u64 = 256 << 20;

impl From<crate::dtype::WeightDtype> for PlanDtype {
    fn from(d: crate::dtype::WeightDtype) -> Self {
        use crate::quantize::Quant;
        match d {
            crate::dtype::WeightDtype::Float(c) => c.into(),
            crate::dtype::WeightDtype::Blocks(Quant::Q8_0) => PlanDtype::Int8,
            crate::dtype::WeightDtype::Blocks(Quant::Q4_0 | Quant::Q4K) => PlanDtype::Int4,
            // The 16-bit checkpoints people run this way (a GGUF file's blocks are planned
            // from its header instead).
            crate::dtype::WeightDtype::Stored => PlanDtype::Bf16,
        }
    }
}

impl From<crate::dtype::ComputeDtype> for PlanDtype {
    fn from(d: crate::dtype::ComputeDtype) -> Self {
        match d {
            crate::dtype::ComputeDtype::F32 => PlanDtype::F32,
            crate::dtype::ComputeDtype::F16 => PlanDtype::F16,
            crate::dtype::ComputeDtype::BF16 => PlanDtype::Bf16,
        }
    }
}

/// What a GPU adapter lets one buffer hold (WebGPU's limits; wgpu reports the same).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpuLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub shader_f16: bool,
}

impl Default for GpuLimits {
    /// WebGPU's defaults, which every adapter grants.
    fn default() -> Self {
        GpuLimits {
            max_buffer_size: WEBGPU_DEFAULT_BUFFER,
            max_storage_buffer_binding_size: WEBGPU_DEFAULT_BINDING,
            shader_f16: false,
        }
    }
}

/// WebAssembly's 32-bit memory is 4 GiB, and browsers grant about 2 GB of it reliably: the
/// weights of a model in the page's CPU backend must stay under this.
pub const WASM_WEIGHTS_LIMIT: u64 = 1_500_000_000;

/// Memory the runtime itself takes besides tensors (thread pool, allocator arenas, code),
/// measured on the tiny fixtures (docs/BENCHMARKS.md): loading grows the resident set by
/// about 3 MiB beyond the weights, and generating by about 2 MiB beyond the KV cache and
/// activations (the worker threads' buffers).
pub const RUNTIME_OVERHEAD: u64 = 5 << 20;

/// Weight formats the planner knows. int8/int4 are block formats with an f16 scale per 32
/// weights (llama.cpp's Q8_0 and Q4_0: 8.5 and 4.5 bits per weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanDtype {
    F32,
    F16,
    Bf16,
    Int8,
    Int4,
}

impl PlanDtype {
    pub const ALL: [PlanDtype; 5] = [
        PlanDtype::F32,
        PlanDtype::F16,
        PlanDtype::Bf16,
        PlanDtype::Int8,
        PlanDtype::Int4,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Self::F32,
            "f16" | "float16" | "fp16" => Self::F16,
            "bf16" | "bfloat16" => Self::Bf16,
            "int8" | "q8" | "q8_0" => Self::Int8,
            "int4" | "q4" | "q4_0" | "q4_k" => Self::Int4,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
        }
    }
    /// Bits per stored weight, block scales included.
    pub fn weight_bits(self) -> f64 {
        match self {
            Self::F32 => 32.0,
            Self::F16 | Self::Bf16 => 16.0,
            Self::Int8 => 8.5,
            Self::Int4 => 4.5,
        }
    }
    /// Bytes of one activation / KV value: quantized weights still compute in f16.
    pub fn act_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            _ => 2,
        }
    }
    /// The rule of thumb's bytes per parameter ("params × 2 for fp16, × 4 for fp32").
    pub fn thumb_bytes(self) -> f64 {
        self.weight_bits() / 8.0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Inference {
    pub dtype: PlanDtype,
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
    /// The runtime's own memory ([`RUNTIME_OVERHEAD`]).
    pub runtime: u64,
    pub total: u64,
    /// params × bytes per parameter.
    pub rule_of_thumb: u64,
    /// (rule_of_thumb − total) / total, in percent.
    pub thumb_off_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FineTune {
    pub method: String,
    pub trainable_params: u64,
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub master_weights: u64,
    pub activations: u64,
    pub total: u64,
    /// Inference memory × 4 ("fine-tuning takes 3–4× inference").
    pub rule_of_thumb: u64,
    pub thumb_off_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BigTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
    /// Which default WebGPU limit it exceeds, and the limit it needs.
    pub exceeds: String,
    pub needs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub architecture: String,
    pub parameters: u64,
    /// Parameters one token runs through (less than `parameters` for a mixture of experts).
    pub active_parameters: u64,
    pub context: usize,
    pub batch: usize,
    pub lora_rank: usize,
    pub kv_bytes_per_token_f16: u64,
    /// What each layer's cache holds (full, a window).
    pub kv_layout: crate::kv::KvLayout,
    pub inference: Vec<Inference>,
    pub fine_tuning: Vec<FineTune>,
    /// Tensors over WebGPU's default limits in the dtype asked for.
    pub webgpu_dtype: PlanDtype,
    pub webgpu_big_tensors: Vec<BigTensor>,
}

/// One row of a plan from the headers alone: weights in a dtype, the KV cache (f16; 0 where
/// the config does not say), the runtime's overhead.
#[derive(Debug, Clone, Serialize)]
pub struct HeaderRow {
    pub dtype: PlanDtype,
    pub weights: u64,
    pub kv_cache: u64,
    pub runtime: u64,
    pub total: u64,
}

/// The weights of `parameters` in every dtype the planner knows (int8/int4 with their block
/// scales) beside a KV cache of `kv_cache` bytes: what the headers alone plan for a family
/// hubscope does not run (inference activations need a family's layer layout).
pub fn header_rows(parameters: u64, kv_cache: u64) -> Vec<HeaderRow> {
    PlanDtype::ALL
        .iter()
        .map(|&dtype| {
            let weights = (parameters as f64 * dtype.weight_bits() / 8.0) as u64;
            HeaderRow {
                dtype,
                weights,
                kv_cache,
                runtime: RUNTIME_OVERHEAD,
                total: weights + kv_cache + RUNTIME_OVERHEAD,
            }
        })
        .collect()
}

/// Trainable parameters of LoRA rank `r` on every projection of the family (q/k/v/o/gate/
/// up/down, Phi-3's fused ones, the experts'): r × (in + out) each.
pub fn lora_params(c: &ModelConfig, r: usize) -> u64 {
    lora_params_for(c, r, &crate::layout::projection_names(c))
}

/// The same for a chosen set of target modules (matched by last name, as PEFT does).
pub fn lora_params_for(c: &ModelConfig, r: usize, targets: &[String]) -> u64 {
    (0..c.num_hidden_layers)
        .flat_map(|l| crate::layout::layer_linears(c, l))
        .filter(|s| targets.iter().any(|t| t == s.name()))
        .map(|s| (r * (s.in_features + s.out_features)) as u64)
        .sum()
}

/// Peak working memory of a forward pass over `ctx` new tokens, besides weights and cache:
/// the largest live set is the MLP (gate, up and their product) plus the residual stream and
/// its norm, the attention scores of one layer, and the f32 logits of the last position.
pub fn activation_bytes(c: &ModelConfig, ctx: usize, batch: usize, act: u64) -> u64 {
    let (b, s) = (batch as u64, ctx as u64);
    let hidden = (c.hidden_size as u64) * 3; // residual, normed, layer output
    let width = (0..c.num_hidden_layers)
        .map(|l| c.ffn_width(l))
        .max()
        .unwrap_or(c.intermediate_size);
    let mlp = (width as u64) * 3;
    let qkv = ((c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim) as u64;
    let per_token = (hidden + mlp.max(qkv)) * act;
    // Scores: full matrix while it is small, else tiles of 256 keys (flash attention).
    let scores = b * c.num_attention_heads as u64 * s * s.min(512) * 4;
    let logits = b * c.vocab_size as u64 * 4;
    b * s * per_token + scores + logits
}

fn off(thumb: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (thumb as f64 - total as f64) / total as f64 * 100.0
    }
}

/// What the fine-tuning rows need to know of a model and a run.
pub struct Training {
    pub parameters: u64,
    /// LoRA's trainable parameters at `lora_rank`.
    pub lora: u64,
    pub lora_rank: usize,
    /// Weights in int4 (QLoRA's base, embedding table included).
    pub int4_weights: u64,
    /// Bytes QLoRA decodes to f32 at once: hubscope's tracked products read a 4-bit weight
    /// decoded (kept by the graph until the backward pass has used it), one decoder layer's
    /// linear weights at a time (gradient checkpointing) or the head, whichever is larger.
    pub decoded: u64,
    /// The bf16 inference total (the rule of thumb is 4 × it).
    pub bf16_inference: u64,
    /// Bytes per frozen base weight in LoRA (2, or 4 where f32 was asked for).
    pub base_bytes: u64,
    /// Activations kept for the backward pass with 2- and with 4-byte activations.
    pub activations: [u64; 2],
}

/// Full fine-tuning (AdamW, bf16 mixed precision), LoRA and QLoRA.
pub fn fine_tuning_rows(t: &Training) -> Vec<FineTune> {
    let acts = |bytes: u64| t.activations[if bytes == 4 { 1 } else { 0 }];
    let ft = |method: &str,
              trainable: u64,
              weights: u64,
              gradients: u64,
              optimizer: u64,
              master: u64,
              acts: u64| {
        let total = weights + gradients + optimizer + master + acts;
        let rule_of_thumb = t.bf16_inference * 4;
        FineTune {
            method: method.into(),
            trainable_params: trainable,
            weights,
            gradients,
            optimizer,
            master_weights: master,
            activations: acts,
            total,
            rule_of_thumb,
            thumb_off_pct: off(rule_of_thumb, total),
        }
    };
    let (params, lora, r) = (t.parameters, t.lora, t.lora_rank);
    vec![
        // Mixed precision AdamW: bf16 weights and gradients, f32 master copy and two moments.
        ft(
            "full (AdamW, bf16 mixed precision)",
            params,
            params * 2,
            params * 2,
            params * 8,
            params * 4,
            acts(2),
        ),
        // LoRA: frozen base in the chosen dtype (bf16 unless f32 was asked for), f32 adapters
        // with f32 gradients and two moments.
        ft(
            &format!(
                "LoRA r={r} ({} base)",
                if t.base_bytes == 4 { "f32" } else { "bf16" }
            ),
            lora,
            params * t.base_bytes + lora * 4,
            lora * 4,
            lora * 8,
            0,
            acts(t.base_bytes),
        ),
        // QLoRA as hubscope runs it: 4-bit base, one layer (or the head) decoded to f32 at a
        // time, f32 compute.
        ft(
            &format!("QLoRA r={r} (4-bit base)"),
            lora,
            t.int4_weights + t.decoded + lora * 4,
            lora * 4,
            lora * 8,
            0,
            acts(4),
        ),
    ]
}

/// Activations hubscope's training holds for `tokens` tokens at `bytes` per value, with
/// gradient checkpointing per decoder layer (its default): every layer's input (hidden per
/// token), plus one layer recomputed for its backward pass — 8 × hidden (both RMSNorms'
/// intermediates), 10 × the feed-forward width one token computes (gate, up, silu and product
/// with their f32 inputs; `widths`, one per layer, the widest counted) and 6 × heads ×
/// head_dim (q plus k and v expanded to all query heads, before and after rotary) — plus the
/// loss, taken `LOSS_ROWS` positions at a time: four f32 [positions, vocab] tensors. None on
/// overflow.
fn training_activations(
    hidden: u64,
    heads_x_dim: u64,
    widths: impl Iterator<Item = u64>,
    vocab: u64,
    tokens: u64,
    bytes: u64,
) -> Option<u64> {
    const LOSS_ROWS: u64 = 128;
    let mut inputs = 0u64;
    let mut widest = 0u64;
    for width in widths {
        inputs = inputs.checked_add(hidden.checked_mul(bytes)?)?;
        let layer = 8u64
            .checked_mul(hidden)?
            .checked_add(10u64.checked_mul(width)?)?
            .checked_add(6u64.checked_mul(heads_x_dim)?)?
            .checked_mul(bytes)?;
        widest = widest.max(layer);
    }
    let loss = 16u64
        .checked_mul(vocab)?
        .checked_mul(tokens.min(LOSS_ROWS))?;
    tokens
        .checked_mul(inputs.checked_add(widest)?)?
        .checked_add(loss)
}

/// Training activations of a family hubscope does not run, estimated with the formula above
/// from config.json's sizes, every layer at the widest feed-forward one token computes (a
/// mixture: `num_experts_per_tok` × `moe_intermediate_size` plus shared experts). None where
/// the config lacks a size.
pub fn estimated_training_activations(
    raw: &serde_json::Value,
    context: usize,
    batch: usize,
    bytes: u64,
) -> Option<u64> {
    let get = |k: &str| raw.get(k).and_then(serde_json::Value::as_u64);
    let hidden = get("hidden_size")?;
    let layers = get("num_hidden_layers")?;
    let heads = get("num_attention_heads")?;
    let vocab = get("vocab_size")?;
    let head_dim = get("head_dim").unwrap_or(hidden / heads.max(1));
    let dense = get("intermediate_size").unwrap_or(4 * hidden);
    let moe = match (get("num_experts_per_tok"), get("moe_intermediate_size")) {
        (Some(k), Some(w)) => {
            let shared = get("shared_expert_intermediate_size")
                .or_else(|| get("n_shared_experts").map(|n| n * w))
                .unwrap_or(0);
            k * w + shared
        }
        _ => 0,
    };
    let width = dense.max(moe);
    training_activations(
        hidden,
        heads.checked_mul(head_dim)?,
        (0..layers).map(|_| width),
        vocab,
        (batch as u64).checked_mul(context as u64)?,
        bytes,
    )
}

/// The run a plan from headers alone is for.
pub struct Run {
    pub context: usize,
    pub batch: usize,
    pub lora_rank: usize,
    /// Bytes per frozen base weight in LoRA (2, or 4 for an f32 base).
    pub base_bytes: u64,
}

/// Fine-tuning rows of any checkpoint from its headers (`parameters` and `rows`: its
/// [`header_rows`]): exact trainable parameters, weights, gradients and optimizer states (LoRA
/// on every linear layer, as PEFT's "all-linear" counts it), activations estimated from
/// config.json's sizes; None where the config lacks a size.
pub fn header_fine_tuning(
    raw: &serde_json::Value,
    headers: &[crate::safetensors::FileHeader],
    parameters: u64,
    rows: &[HeaderRow],
    run: &Run,
) -> Option<Vec<FineTune>> {
    let acts = |bytes| estimated_training_activations(raw, run.context, run.batch, bytes);
    let row = |d: PlanDtype| rows.iter().find(|r| r.dtype == d);
    Some(fine_tuning_rows(&Training {
        parameters,
        lora: crate::checkpoint::lora_parameters(headers, run.lora_rank),
        lora_rank: run.lora_rank,
        int4_weights: row(PlanDtype::Int4)?.weights,
        // From headers alone: the largest tensor (the head or the embedding table, usually).
        decoded: headers
            .iter()
            .flat_map(|h| h.tensors.values())
            .map(|t| t.shape.iter().product::<usize>() as u64 * 4)
            .max()
            .unwrap_or(0),
        bf16_inference: row(PlanDtype::Bf16)?.total,
        base_bytes: run.base_bytes,
        activations: [acts(2)?, acts(4)?],
    }))
}

/// The plan of a checkpoint hubscope does not run (or a quantized one), from config.json and
/// its headers alone — `mem` and the page's Memory tab show it.
#[derive(Debug, Clone)]
pub struct HeaderPlan {
    pub parameters: u64,
    /// Weights per dtype beside the KV cache (f16) and the runtime.
    pub inference: Vec<HeaderRow>,
    /// The KV layout config.json implies, or why it cannot be read (then no KV is counted).
    pub kv_layout: std::result::Result<crate::kv::KvLayout, String>,
    /// KV cache bytes (f16) for the run's context and batch.
    pub kv_bytes_f16: u64,
    /// Experts and the parameters a token runs through (`num_experts_per_tok` of them).
    pub experts: Option<crate::checkpoint::Experts>,
    pub top_k: usize,
    /// Full, LoRA and QLoRA rows; None where config.json lacks a size.
    pub fine_tuning: Option<Vec<FineTune>>,
}

/// Plan a checkpoint from its config.json (`raw`) and safetensors headers for `run`.
pub fn header_plan(
    raw: &serde_json::Value,
    headers: &[crate::safetensors::FileHeader],
    run: &Run,
) -> HeaderPlan {
    let parameters = crate::checkpoint::summarize(headers).parameters;
    let kv_layout = crate::kv::KvLayout::from_config(raw).map_err(|e| e.to_string());
    let kv_bytes_f16 = kv_layout.as_ref().map_or(0, |k| {
        k.bytes(run.context, 2).saturating_mul(run.batch as u64)
    });
    let top_k = raw["num_experts_per_tok"].as_u64().unwrap_or(1) as usize;
    let inference = header_rows(parameters, kv_bytes_f16);
    HeaderPlan {
        parameters,
        fine_tuning: header_fine_tuning(raw, headers, parameters, &inference, run),
        inference,
        kv_layout,
        kv_bytes_f16,
        experts: crate::checkpoint::experts(headers, parameters, top_k),
        top_k,
    }
}

/// A GGUF file's memory: its weights as stored, the KV cache (f16) its metadata implies
/// (`block_count`, `attention.head_count_kv`, key/value lengths; None where it lacks them), the
/// runtime's overhead.
#[derive(Debug, Clone, Serialize)]
pub struct GgufPlan {
    pub weights: u64,
    pub kv_bytes_per_token_f16: Option<u64>,
    pub kv_cache: Option<u64>,
    pub runtime: u64,
    pub total: u64,
}

/// Plan a GGUF file for `context` tokens × `batch`.
pub fn gguf_plan(h: &crate::gguf::GgufHeader, context: usize, batch: usize) -> GgufPlan {
    let weights: u64 = h.tensors.iter().map(|t| t.bytes).sum();
    let kv_bytes_per_token_f16 = h.kv_bytes_per_token(2);
    let kv_cache = kv_bytes_per_token_f16.map(|k| k.saturating_mul((context * batch) as u64));
    GgufPlan {
        weights,
        kv_bytes_per_token_f16,
        kv_cache,
        runtime: RUNTIME_OVERHEAD,
        total: weights + kv_cache.unwrap_or(0) + RUNTIME_OVERHEAD,
    }
}

/// The plan for `context` tokens at `batch`, LoRA rank `lora_rank`.
pub fn plan(
    c: &ModelConfig,
    context: usize,
    batch: usize,
    lora_rank: usize,
    webgpu_dtype: PlanDtype,
) -> Plan {
    let tree = model_tree(c);
    let params = tree.num_params() as u64;
    let embed = (c.vocab_size * c.hidden_size) as u64;
    let head_untied = if c.tie_word_embeddings { 0 } else { embed };
    let kv_per_token = |bytes: u64| c.kv_bytes_per_token(bytes as usize) as u64;

    let inference = PlanDtype::ALL
        .iter()
        .map(|&d| {
            // Quantized formats keep embeddings (and an untied head) in f16, as llama.cpp and
            // bitsandbytes do for the embedding table.
            let weights = match d {
                PlanDtype::Int8 | PlanDtype::Int4 => {
                    let q = params - embed - head_untied;
                    (q as f64 * d.weight_bits() / 8.0) as u64 + (embed + head_untied) * 2
                }
                _ => (params as f64 * d.weight_bits() / 8.0) as u64,
            };
            let kv_cache = c.kv_bytes(context, d.act_bytes() as usize) * batch as u64;
            let activations = activation_bytes(c, context, batch, d.act_bytes());
            let total = weights + kv_cache + activations + RUNTIME_OVERHEAD;
            let rule_of_thumb = (params as f64 * d.thumb_bytes()) as u64;
            Inference {
                dtype: d,
                weights,
                kv_cache,
                activations,
                runtime: RUNTIME_OVERHEAD,
                total,
                rule_of_thumb,
                thumb_off_pct: off(rule_of_thumb, total),
            }
        })
        .collect::<Vec<_>>();

    // Training with gradient checkpointing (hubscope's default): every layer's input, one layer
    // recomputed at a time, the loss a piece of positions at a time (`training_activations`).
    // Checked against a measured LoRA run in tests/plan.rs and docs/BENCHMARKS.md.
    let heads_x_dim = (c.num_attention_heads * c.head_dim) as u64;
    let train_acts = |act: u64| {
        training_activations(
            c.hidden_size as u64,
            heads_x_dim,
            (0..c.num_hidden_layers).map(|l| c.ffn_width(l) as u64),
            c.vocab_size as u64,
            (batch * context) as u64,
            act,
        )
        .unwrap_or(u64::MAX)
    };
    let bf16_inference = inference
        .iter()
        .find(|i| i.dtype == PlanDtype::Bf16)
        .map_or(0, |i| i.total);
    // QLoRA's base as hubscope trains it (`--dtype q4_0`, or a 4-bit GGUF file): the embedding
    // table in blocks too.
    let int4_weights = (params as f64 * PlanDtype::Int4.weight_bits() / 8.0) as u64;
    let base_bytes = if webgpu_dtype == PlanDtype::F32 { 4 } else { 2 };
    let layer_weights = largest_layer_weights(c);
    let fine_tuning = fine_tuning_rows(&Training {
        parameters: params,
        lora: lora_params(c, lora_rank),
        lora_rank,
        int4_weights,
        // The head is as large as the embedding table (tied or not).
        decoded: layer_weights.max(embed) * 4,
        bf16_inference,
        base_bytes,
        activations: [train_acts(2), train_acts(4)],
    });

    let big = oversized_tensors(c, webgpu_dtype, &GpuLimits::default());
    Plan {
        architecture: tree.class.clone(),
        parameters: params,
        active_parameters: c.active_parameters(params),
        context,
        batch,
        lora_rank,
        kv_bytes_per_token_f16: kv_per_token(2),
        kv_layout: c.kv_layout(),
        inference,
        fine_tuning,
        webgpu_dtype,
        webgpu_big_tensors: big,
    }
}

/// Weights of the decoder layer with the most (its linear layers).
pub fn largest_layer_weights(c: &ModelConfig) -> u64 {
    (0..c.num_hidden_layers)
        .map(|l| {
            crate::layout::layer_linears(c, l)
                .iter()
                .map(|s| (s.in_features * s.out_features) as u64)
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
}

/// Fits or not on a device with `capacity` bytes (e.g. free GPU memory), with the headroom.
pub fn verdict(total: u64, capacity: u64) -> (bool, i64) {
    (total <= capacity, capacity as i64 - total as i64)
}

/// The tensors of the model (tied ones once) that one buffer of an adapter with `limits`
/// cannot hold in `dtype`, largest first: what refuses a WebGPU run before any download.
pub fn oversized_tensors(c: &ModelConfig, dtype: PlanDtype, limits: &GpuLimits) -> Vec<BigTensor> {
    let bytes = dtype.weight_bits() / 8.0;
    // Limits as WebGPU documents them (128 MiB), others in decimal units.
    let human = |b: u64| {
        if b % (1 << 20) == 0 {
            format!("{} MiB", b >> 20)
        } else {
            crate::units::human_bytes(b)
        }
    };
    let mut big = vec![];
    for p in model_tree(c).all_params() {
        if p.tied_to.is_some() {
            continue;
        }
        let b = (p.numel() as f64 * bytes) as u64;
        if b > limits.max_storage_buffer_binding_size {
            let binding = format!(
                "maxStorageBufferBindingSize ({})",
                human(limits.max_storage_buffer_binding_size)
            );
            let exceeds = if b > limits.max_buffer_size {
                format!(
                    "maxBufferSize ({}) and {binding}",
                    human(limits.max_buffer_size)
                )
            } else {
                binding
            };
            big.push(BigTensor {
                name: p.path.clone(),
                shape: p.shape.clone(),
                bytes: b,
                exceeds,
                needs: b,
            });
        }
    }
    big.sort_by(|a, b| b.bytes.cmp(&a.bytes));
    big
}

/// The compute dtype for `config` when the page is left to choose (`dtype=auto`), and why when
/// it is not f32: on the CPU (WebAssembly) f16 where the f32 weights exceed what its memory
/// holds; on WebGPU f16 where a tensor in f32 exceeds the adapter's binding limit, every one
/// fits in f16 and the adapter has `shader-f16`. f32 otherwise (exact, and what every device
/// runs; a model that fits in neither is refused by the device choice, which says why).
pub fn fitting_dtype(
    c: &ModelConfig,
    webgpu: Option<&GpuLimits>,
) -> (crate::ComputeDtype, Option<String>) {
    use crate::ComputeDtype;
    let human = crate::units::human_bytes;
    match webgpu {
        None => match wasm_weights_too_big(c, PlanDtype::F32) {
            Some(w) => (
                ComputeDtype::F16,
                Some(format!(
                    "f16: the weights take {} in f32, more than WebAssembly memory holds (about {}); f16 halves them",
                    human(w),
                    human(WASM_WEIGHTS_LIMIT)
                )),
            ),
            None => (ComputeDtype::F32, None),
        },
        Some(limits) => match oversized_tensors(c, PlanDtype::F32, limits).first() {
            Some(t)
                if limits.shader_f16 && oversized_tensors(c, PlanDtype::F16, limits).is_empty() =>
            {
                (
                    ComputeDtype::F16,
                    Some(format!(
                        "f16: {} takes {} in f32, more than the adapter binds ({})",
                        t.name,
                        human(t.bytes),
                        human(limits.max_storage_buffer_binding_size)
                    )),
                )
            }
            _ => (ComputeDtype::F32, None),
        },
    }
}

/// Weights of the model in `dtype` if they are too big for the page's WebAssembly memory.
pub fn wasm_weights_too_big(c: &ModelConfig, dtype: PlanDtype) -> Option<u64> {
    let w = wasm_weights(c, dtype);
    (w > WASM_WEIGHTS_LIMIT).then_some(w)
}

/// Bytes of the model's weights in `dtype`.
pub fn wasm_weights(c: &ModelConfig, dtype: PlanDtype) -> u64 {
    (model_tree(c).num_params() as f64 * dtype.weight_bits() / 8.0) as u64
}
