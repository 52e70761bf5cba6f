//! How a handed-off run is spread over its GPUs: DeepSpeed's JSON for a ZeRO stage (the
//! `"auto"` values filled in by transformers' Trainer from the training arguments) and
//! accelerate's launch config (one GPU, DeepSpeed or FSDP 2) with the planned machines and
//! processes.

use super::yaml::Doc;
use super::{Launcher, Run};
use crate::OutFile;
use crate::cluster::Sharding;

/// DeepSpeed's config file for the run's ZeRO stage; None without sharding.
pub fn deepspeed_json(run: &Run) -> Option<OutFile> {
    let zero = match run.placement.sharding {
        Sharding::Replicated => return None,
        Sharding::Zero2 => serde_json::json!({
            "stage": 2,
            "allgather_partitions": true,
            "allgather_bucket_size": 5e8,
            "overlap_comm": false,
            "reduce_scatter": true,
            "reduce_bucket_size": 5e8,
            "contiguous_gradients": true,
            "round_robin_gradients": true
        }),
        Sharding::Zero3 => serde_json::json!({
            "stage": 3,
            "overlap_comm": false,
            "contiguous_gradients": true,
            "sub_group_size": 1e9,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_max_live_parameters": 1e9,
            "stage3_max_reuse_distance": 1e9,
            "stage3_gather_16bit_weights_on_model_save": true
        }),
    };
    let config = serde_json::json!({
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": true,
        "bf16": { "enabled": "auto" },
        "zero_optimization": zero
    });
    let mut bytes = serde_json::to_vec_pretty(&config).unwrap_or_default();
    bytes.push(b'\n');
    Some(OutFile {
        name: deepspeed_name(run.placement.sharding).into(),
        bytes,
    })
}

pub fn deepspeed_name(s: Sharding) -> &'static str {
    match s {
        Sharding::Zero3 => "ds_z3_config.json",
        _ => "ds_z2_config.json",
    }
}

/// accelerate's launch config: processes and machines as planned, bf16, and the sharding.
pub fn accelerate_yaml(run: &Run) -> OutFile {
    let p = &run.placement;
    let mut d = Doc::default();
    d.comment(&format!(
        "accelerate launch config: {} GPU(s) on {} machine(s), {}.",
        p.gpus,
        p.nodes,
        match (p.sharding, run.launcher) {
            (Sharding::Replicated, _) => "no sharding".to_string(),
            (s, Launcher::DeepSpeed) => format!("DeepSpeed {}", s.name()),
            (Sharding::Zero2, Launcher::Fsdp) =>
                "FSDP 2, gradients and optimizer states sharded".into(),
            (Sharding::Zero3, Launcher::Fsdp) => "FSDP 2, everything sharded".into(),
        }
    ))
    .comment(
        "On every machine set machine_rank (0, 1, ...) and main_process_ip to machine 0's address.",
    )
    .set("compute_environment", "LOCAL_MACHINE")
    .set("debug", false);
    match (p.sharding, run.launcher) {
        (Sharding::Replicated, _) if p.gpus == 1 => {
            d.set("distributed_type", "NO");
        }
        (Sharding::Replicated, _) => {
            d.set("distributed_type", "MULTI_GPU");
        }
        (s, Launcher::DeepSpeed) => {
            d.set("distributed_type", "DEEPSPEED")
                .map("deepspeed_config", |d| {
                    d.set("deepspeed_multinode_launcher", "standard")
                        .set("offload_optimizer_device", "none")
                        .set("offload_param_device", "none")
                        .set("zero3_init_flag", s == Sharding::Zero3)
                        .set("zero3_save_16bit_model", s == Sharding::Zero3)
                        .set("zero_stage", if s == Sharding::Zero3 { 3usize } else { 2 });
                });
        }
        (s, Launcher::Fsdp) => {
            d.set("distributed_type", "FSDP").map("fsdp_config", |d| {
                d.set("fsdp_version", 2usize)
                    .set("fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP")
                    .set("fsdp_cpu_ram_efficient_loading", true)
                    .set("fsdp_offload_params", false)
                    .set("fsdp_reshard_after_forward", s == Sharding::Zero3)
                    .set("fsdp_state_dict_type", "FULL_STATE_DICT")
                    .set("fsdp_activation_checkpointing", false);
            });
        }
    }
    d.set("downcast_bf16", "no")
        .set("machine_rank", 0usize)
        .set("main_training_function", "main")
        .set("mixed_precision", "bf16")
        .set("num_machines", p.nodes)
        .set("num_processes", p.gpus)
        .set("rdzv_backend", "static")
        .set("same_network", true)
        .set("use_cpu", false);
    if p.nodes > 1 {
        d.set("main_process_ip", "127.0.0.1")
            .set("main_process_port", 29500usize);
    }
    OutFile {
        name: "accelerate.yaml".into(),
        bytes: d.finish(),
    }
}
