//! Where a training run fits on GPUs: how many GPUs of a given memory it needs, and which
//! sharding (data-parallel replicas, ZeRO stage 2, ZeRO stage 3 — FSDP's SHARD_GRAD_OP and
//! FULL_SHARD shard the same states) — with DeepSpeed's own memory model for the trainable
//! part (`estimate_zero2/3_model_states_mem_needs` without offload: 16-bit parameters, and 18
//! bytes per trainable parameter for 16- and 32-bit gradients, the 32-bit master copy and
//! AdamW's two moments; ZeRO-3 gathers a layer at a time, 4 bytes per parameter of the largest
//! one). Frozen base weights are held as they are (bf16, or 4-bit for QLoRA), sharded only by
//! ZeRO-3. Activations are each GPU's own (its micro-batch).

use serde::Serialize;

use crate::config::ModelConfig;
use crate::plan::PlanDtype;

/// How the training states are spread over the GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharding {
    /// Every GPU holds everything (one GPU, or plain data parallelism).
    Replicated,
    /// Gradients and optimizer states sharded (ZeRO-2, FSDP SHARD_GRAD_OP).
    Zero2,
    /// Parameters too (ZeRO-3, FSDP FULL_SHARD).
    Zero3,
}

impl Sharding {
    pub fn name(self) -> &'static str {
        match self {
            Sharding::Replicated => "none",
            Sharding::Zero2 => "ZeRO-2",
            Sharding::Zero3 => "ZeRO-3",
        }
    }
}

/// What a run holds, in parameters and bytes, before it is spread over GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainingMemory {
    /// Parameters the optimizer updates (all of them in full fine-tuning; the adapters in LoRA).
    pub trainable: u64,
    /// Bytes of the frozen base weights (0 in full fine-tuning).
    pub frozen_bytes: u64,
    /// Parameters of the largest layer (ZeRO-3 gathers one layer's at a time).
    pub largest_layer: u64,
    /// Activations one GPU keeps for its micro-batch.
    pub activations: u64,
}

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Lora,
    /// LoRA on a 4-bit base (bitsandbytes NF4 in the engines runs are handed to).
    Qlora,
    Full,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Full, Method::Lora, Method::Qlora];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lora => "LoRA",
            Self::Qlora => "QLoRA",
            Self::Full => "full fine-tuning",
        }
    }
}

/// What a run of `method` holds on GPUs in bf16 mixed precision, with gradient checkpointing,
/// for `context` tokens × `batch` per GPU; LoRA of `rank` on `targets` (PEFT's last names).
/// The frozen base is bf16, or for QLoRA 4-bit with the embedding table and an untied head in
/// 16 bits (as bitsandbytes keeps them: the planner's int4 inference weights).
pub fn training_memory(
    c: &ModelConfig,
    method: Method,
    rank: usize,
    targets: &[String],
    context: usize,
    batch: usize,
) -> TrainingMemory {
    let p = crate::plan::plan(c, context, batch, rank, PlanDtype::Bf16);
    let embed = (c.vocab_size * c.hidden_size) as u64;
    TrainingMemory {
        trainable: match method {
            Method::Full => p.parameters,
            _ => crate::plan::lora_params_for(c, rank, targets),
        },
        frozen_bytes: match method {
            Method::Full => 0,
            Method::Lora => p.parameters * 2,
            Method::Qlora => p
                .inference
                .iter()
                .find(|r| r.dtype == PlanDtype::Int4)
                .map_or(p.parameters, |r| r.weights),
        },
        largest_layer: crate::plan::largest_layer_weights(c).max(embed),
        // The full fine-tuning row's: bf16 activations, checkpointed.
        activations: p.fine_tuning.first().map_or(0, |r| r.activations),
    }
}

/// Bytes per trainable parameter besides its 16-bit copy (DeepSpeed's 18).
const STATES: u64 = 18;

impl TrainingMemory {
    /// Bytes one of `gpus` GPUs needs with `sharding`.
    pub fn per_gpu(&self, sharding: Sharding, gpus: u64) -> u64 {
        let n = gpus.max(1);
        let t = self.trainable;
        let states = match sharding {
            Sharding::Replicated => self.frozen_bytes + 2 * t + STATES * t,
            Sharding::Zero2 => self.frozen_bytes + 2 * t + (STATES * t).div_ceil(n),
            Sharding::Zero3 => {
                (self.frozen_bytes + STATES * t).div_ceil(n) + 4 * self.largest_layer
            }
        };
        states + self.activations
    }
}

/// The share of a GPU's memory a plan fills: the rest is for the CUDA context, the
/// communication buffers and the allocator's fragmentation.
pub const USABLE: f64 = 0.9;

/// The GPUs a run is planned on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Gpus {
    /// Bytes of one GPU's memory.
    pub memory: u64,
    /// GPUs per machine (a run over more takes whole machines).
    pub per_node: u64,
    /// Use exactly this many (else the fewest that fit).
    pub count: Option<u64>,
}

/// Where a run goes: how many GPUs on how many machines, the sharding, and what each GPU holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Placement {
    pub gpus: u64,
    pub nodes: u64,
    pub sharding: Sharding,
    pub per_gpu: u64,
    /// What fits on one GPU ([`USABLE`] of its memory).
    pub usable: u64,
}

/// The GPU a plan assumes where none is named: 80 GB (A100/H100 80GB).
pub const DEFAULT_GPU_GB: f64 = 80.0;

/// The most GPUs a plan considers.
pub const MAX_GPUS: u64 = 1024;

/// The fewest GPUs (whole machines past one) that hold the run, the least sharding among equal
/// counts; with `gpus.count`, the least sharding that fits that many. `Err` carries what one
/// GPU would need at the most GPUs tried, with ZeRO-3.
pub fn place(m: &TrainingMemory, gpus: &Gpus) -> Result<Placement, u64> {
    let usable = (gpus.memory as f64 * USABLE) as u64;
    let per_node = gpus.per_node.max(1);
    let fits = |n: u64| {
        let shardings: &[Sharding] = if n == 1 {
            &[Sharding::Replicated]
        } else {
            &[Sharding::Zero2, Sharding::Zero3]
        };
        shardings
            .iter()
            .map(|&s| (s, m.per_gpu(s, n)))
            .find(|&(_, bytes)| bytes <= usable)
    };
    let placed = |n: u64, (sharding, per_gpu): (Sharding, u64)| Placement {
        gpus: n,
        nodes: n.div_ceil(per_node),
        sharding,
        per_gpu,
        usable,
    };
    let counts: Vec<u64> = match gpus.count {
        Some(n) => vec![n.max(1)],
        // One machine's counts, then whole machines.
        None => (1..=per_node)
            .chain((2..).map(|k| k * per_node).take_while(|&n| n <= MAX_GPUS))
            .collect(),
    };
    for &n in &counts {
        if let Some(fit) = fits(n) {
            return Ok(placed(n, fit));
        }
    }
    let last = counts.last().copied().unwrap_or(1);
    Err(m.per_gpu(
        if last == 1 {
            Sharding::Replicated
        } else {
            Sharding::Zero3
        },
        last,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    fn full(params: u64, largest: u64) -> TrainingMemory {
        TrainingMemory {
            trainable: params,
            frozen_bytes: 0,
            largest_layer: largest,
            activations: 0,
        }
    }

    #[test]
    fn full_fine_tuning_is_deepspeeds_estimate() {
        // DeepSpeed's formulas (no offload): ZeRO-2 2P + 18P/N, ZeRO-3 4L + 18P/N.
        let m = full(7_000_000_000, 500_000_000);
        assert_eq!(m.per_gpu(Sharding::Zero2, 8), 14 * GB + 15_750_000_000);
        assert_eq!(m.per_gpu(Sharding::Zero3, 8), 2 * GB + 15_750_000_000);
        assert_eq!(m.per_gpu(Sharding::Replicated, 1), 140 * GB);
    }

    #[test]
    fn the_fewest_gpus_then_the_least_sharding() {
        let m = full(7_000_000_000, 500_000_000);
        let gpus = |count| Gpus {
            memory: 80 * GB,
            per_node: 8,
            count,
        };
        // 140 GB replicated; ZeRO-2 on 2: 14 + 63 = 77 > 72 usable; ZeRO-3 on 2: 2 + 63 = 65.
        let p = place(&m, &gpus(None)).unwrap();
        assert_eq!((p.gpus, p.nodes, p.sharding), (2, 1, Sharding::Zero3));
        // On 4, ZeRO-2 fits (14 + 31.5) and shards less.
        let p = place(&m, &gpus(Some(4))).unwrap();
        assert_eq!(p.sharding, Sharding::Zero2);
        // One GPU cannot hold it: what it would need.
        assert_eq!(place(&m, &gpus(Some(1))), Err(140 * GB));
        // A 70B model past one machine takes whole machines.
        let big = full(70_000_000_000, 2_000_000_000);
        let p = place(&big, &gpus(None)).unwrap();
        assert_eq!((p.gpus, p.nodes, p.sharding), (24, 3, Sharding::Zero3));
    }

    #[test]
    fn frozen_weights_shard_only_with_zero3() {
        let m = TrainingMemory {
            trainable: 1_000,
            frozen_bytes: 100 * GB,
            largest_layer: 1_000_000,
            activations: GB,
        };
        assert_eq!(m.per_gpu(Sharding::Zero2, 4), 100 * GB + 2_000 + 4_500 + GB);
        assert_eq!(
            m.per_gpu(Sharding::Zero3, 4),
            (100 * GB + 18_000).div_ceil(4) + 4_000_000 + GB
        );
    }
}
