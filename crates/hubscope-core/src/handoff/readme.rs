//! The hand-off folder's README: what the run is, what the planner put on each GPU and why
//! that many, the commands that start it, and where it differs from hubscope's own run.

use std::fmt::Write;

use super::{Framework, Launcher, Method, Run};
use crate::cluster::Sharding;
use crate::units::human_bytes;

pub fn readme(run: &Run, framework: Framework) -> String {
    let p = &run.placement;
    let m = &run.memory;
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# {} of {} with {}\n",
        run.method.name(),
        run.model,
        framework.name()
    );
    let _ = writeln!(
        r,
        "Written by `hubscope finetune --emit`: {} example(s), the longest {} tokens, {} epoch(s).\n",
        run.conversations.len(),
        run.max_length,
        run.settings.epochs
    );
    let _ = writeln!(r, "## Plan\n");
    let _ = writeln!(
        r,
        "- {} GPU(s) on {} machine(s), sharding: {}{}.",
        p.gpus,
        p.nodes,
        p.sharding.name(),
        match (p.sharding, run.launcher) {
            (Sharding::Replicated, _) => String::new(),
            (_, Launcher::DeepSpeed) => " (DeepSpeed)".into(),
            (Sharding::Zero2, Launcher::Fsdp) =>
                " (as FSDP 2 without resharding after forward)".into(),
            (Sharding::Zero3, Launcher::Fsdp) => " (as FSDP 2 full sharding)".into(),
        }
    );
    let _ = writeln!(
        r,
        "- Each GPU holds about {} of the {} usable (90% of its memory): {} trainable parameters \
         (16-bit copy plus 18 bytes of gradients, master weights and AdamW moments each, as \
         DeepSpeed counts them), {} of frozen base weights, {} of activations (bf16, gradient \
         checkpointing, per GPU's batch).",
        human_bytes(p.per_gpu),
        human_bytes(p.usable),
        m.trainable,
        human_bytes(m.frozen_bytes),
        human_bytes(m.activations)
    );
    let _ = writeln!(
        r,
        "- Per GPU on {} GPU(s): no sharding {}, ZeRO-2 {}, ZeRO-3 {}.\n",
        p.gpus,
        human_bytes(m.per_gpu(Sharding::Replicated, p.gpus)),
        human_bytes(m.per_gpu(Sharding::Zero2, p.gpus)),
        human_bytes(m.per_gpu(Sharding::Zero3, p.gpus))
    );
    let _ = writeln!(r, "## Run\n");
    match framework {
        Framework::LlamaFactory => {
            let _ = writeln!(r, "```sh\npip install llamafactory deepspeed\n");
            if p.nodes > 1 {
                let _ = writeln!(
                    r,
                    "# on machine k of {} (k = 0 .. {}), MASTER_ADDR = machine 0's address\n\
                     FORCE_TORCHRUN=1 NNODES={} NODE_RANK=k MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 \
                     NPROC_PER_NODE={} llamafactory-cli train train.yaml",
                    p.nodes,
                    p.nodes - 1,
                    p.nodes,
                    p.gpus / p.nodes
                );
            } else if p.gpus > 1 {
                let _ = writeln!(
                    r,
                    "FORCE_TORCHRUN=1 NPROC_PER_NODE={} llamafactory-cli train train.yaml",
                    p.gpus
                );
            } else {
                let _ = writeln!(r, "llamafactory-cli train train.yaml");
            }
            let _ = writeln!(r, "```\n");
        }
        Framework::Trl => {
            let _ = writeln!(
                r,
                "```sh\npip install trl peft{}\ntrl sft --config sft.yaml --accelerate_config accelerate.yaml\n```\n",
                if p.sharding != Sharding::Replicated && run.launcher == Launcher::DeepSpeed {
                    " deepspeed"
                } else {
                    ""
                }
            );
            if p.nodes > 1 {
                let _ = writeln!(
                    r,
                    "On each of the {} machines, set `machine_rank` and `main_process_ip` in accelerate.yaml first.\n",
                    p.nodes
                );
            }
        }
    }
    if run.method != Method::Full {
        let _ = writeln!(
            r,
            "The adapter it saves is PEFT's: `hubscope generate {} --adapter <output folder>` runs it.\n",
            run.model
        );
    }
    let _ = writeln!(r, "## Where it differs from `hubscope finetune`\n");
    let _ = writeln!(
        r,
        "- Mixed precision bf16 on GPUs (hubscope trains in the dtype asked for, f32 by default)."
    );
    if p.gpus > 1 {
        let _ = writeln!(
            r,
            "- Data parallel: the global batch is {} × {} GPUs; scale the learning rate if you want \
             hubscope's batch of {}.",
            run.settings.batch_size, p.gpus, run.settings.batch_size
        );
    }
    if run.method == Method::Qlora {
        let _ = writeln!(
            r,
            "- The 4-bit base is bitsandbytes' NF4, not ggml's Q4_0/Q4_K."
        );
    }
    if framework == Framework::Trl {
        let _ = writeln!(
            r,
            "- TRL's trainer shuffles the examples; hubscope takes them in the file's order."
        );
    }
    r
}
