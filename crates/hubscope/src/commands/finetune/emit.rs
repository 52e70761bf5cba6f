//! `hubscope finetune --emit llamafactory|trl`: instead of training, the same run planned for
//! GPUs (how many, which sharding: the core's `cluster::place` over the planner's figures) and
//! written as that engine's configuration (the core's `handoff`). Reads config.json and the
//! tokenizer only: a repo id downloads no weights.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::WeightDtype;
use hubscope_core::cluster::{Gpus, place, training_memory};
use hubscope_core::handoff::{Framework, Launcher, Lora, Method, Run, emit};
use hubscope_core::lora::{Checked, FineTuneSettings};
use hubscope_core::units::human_bytes;
use serde_json::json;

use super::FinetuneArgs;
use crate::folder::ModelFolder;
use crate::hub::local_or_download_text;
use crate::load::text_side;
use crate::output::write_atomically;

#[derive(Args)]
pub struct EmitArgs {
    /// Do not train: write the run for another engine into --out — `llamafactory` (train.yaml,
    /// dataset_info.json, data.jsonl, DeepSpeed config) or `trl` (sft.yaml, data/,
    /// accelerate.yaml) — planned for the GPUs below. For runs this machine cannot hold, or
    /// full fine-tuning. Reads config.json and the tokenizer only.
    #[arg(long, value_parser = parse_framework)]
    pub emit: Option<Framework>,
    /// With --emit: full fine-tuning (every weight trained) instead of LoRA.
    #[arg(long, requires = "emit")]
    pub full: bool,
    /// With --emit: memory of one GPU, in GB.
    #[arg(long, default_value_t = hubscope_core::cluster::DEFAULT_GPU_GB, requires = "emit")]
    pub gpu_gb: f64,
    /// With --emit: use exactly this many GPUs (default: the fewest that hold the run).
    #[arg(long, requires = "emit")]
    pub gpus: Option<u64>,
    /// With --emit: GPUs per machine (more than this take whole machines).
    #[arg(long, default_value_t = 8, requires = "emit")]
    pub gpus_per_node: u64,
    /// With --emit: shard with `deepspeed` (ZeRO) or, for TRL, `fsdp` (accelerate's FSDP 2).
    #[arg(long, default_value = "deepspeed", value_parser = ["deepspeed", "fsdp"], requires = "emit")]
    pub sharding: String,
}

fn parse_framework(s: &str) -> std::result::Result<Framework, String> {
    Framework::parse(s).ok_or_else(|| format!("`{s}`: expected llamafactory or trl"))
}

pub fn run(
    a: &FinetuneArgs,
    framework: Framework,
    checked: Checked,
    settings: &FineTuneSettings,
) -> Result<()> {
    let e = &a.emit;
    if !(e.gpu_gb.is_finite() && e.gpu_gb > 0.0) {
        bail!("--gpu-gb: expected a positive size in GB");
    }
    if e.gpus == Some(0) || e.gpus_per_node == 0 {
        bail!("--gpus and --gpus-per-node: at least 1");
    }
    if a.init_adapter.is_some() {
        bail!("--init-adapter: a hand-off starts a fresh adapter");
    }
    let method = match (e.full, a.dev.dtype()?) {
        (true, WeightDtype::Blocks(_)) => {
            bail!("--full with a quantized --dtype: full fine-tuning trains every weight in bf16")
        }
        (true, _) => Method::Full,
        (false, WeightDtype::Blocks(_)) => Method::Qlora,
        (false, WeightDtype::Float(_) | WeightDtype::Stored) => Method::Lora,
    };
    let launcher = match e.sharding.as_str() {
        "fsdp" => Launcher::Fsdp,
        _ => Launcher::DeepSpeed,
    };
    let dir = local_or_download_text(&a.model, &a.hub)?;
    let folder = ModelFolder::open(&dir.to_string_lossy())?;
    if folder.gguf.is_some() {
        bail!(
            "{}: --emit hands off a Hugging Face checkpoint (config.json and safetensors); \
             LLaMA-Factory and TRL do not train GGUF files",
            folder.place()
        );
    }
    let text = text_side(&folder)?;
    let tok = text.tokenizer.as_ref().with_context(|| {
        format!(
            "{}: missing (needed to count the data's tokens)",
            folder.path("tokenizer.json").display()
        )
    })?;
    let conversations = checked.conversations().to_vec();
    let prepared = checked.render(&text.config, tok)?;
    let c = &text.config;
    let lora = (method != Method::Full).then(|| Lora {
        rank: prepared.fresh.r,
        alpha: prepared.fresh.lora_alpha,
        dropout: prepared.fresh.lora_dropout,
        targets: prepared.fresh.target_modules.clone(),
    });
    // The planner's figures for this run: bf16 mixed precision, each GPU's batch, the longest
    // example's tokens, gradient checkpointing (what the engines' activations are sized by).
    let memory = training_memory(
        c,
        method,
        prepared.fresh.r,
        &prepared.fresh.target_modules,
        prepared.longest,
        settings.batch_size,
    );
    let gpus = Gpus {
        memory: (e.gpu_gb * 1e9) as u64,
        per_node: e.gpus_per_node,
        count: e.gpus,
    };
    let placement = place(&memory, &gpus).map_err(|need| {
        anyhow::anyhow!(
            "{} of {} does not fit {}: each GPU would need {} even with ZeRO-3 (usable: 90% of {} GB); \
             try QLoRA (--dtype q4_0), a shorter context or larger GPUs",
            method.name(),
            a.model,
            match e.gpus {
                Some(n) => format!("on {n} GPU(s)"),
                None => format!("on {} GPUs", hubscope_core::cluster::MAX_GPUS),
            },
            human_bytes(need),
            e.gpu_gb
        )
    })?;
    let model = if Path::new(&a.model).exists() {
        std::path::absolute(&a.model)
            .with_context(|| format!("{}: cannot resolve", a.model))?
            .to_string_lossy()
            .into_owned()
    } else {
        a.model.clone()
    };
    let handoff = Run {
        model,
        config: c,
        method,
        lora,
        settings,
        conversations: &conversations,
        max_length: prepared.longest,
        memory,
        placement,
        launcher,
    };
    let files = emit(&handoff, framework).with_context(|| a.data.display().to_string())?;
    write_atomically(&a.out, &files)?;
    if a.json {
        println!(
            "{}",
            json!({"out": a.out, "framework": framework.name(), "method": method.name(),
                "placement": placement, "memory": memory, "max_length": prepared.longest,
                "files": files.iter().map(|f| &f.name).collect::<Vec<_>>()})
        );
    } else {
        println!(
            "{} for {}: {} GPU(s) of {} GB on {} machine(s), sharding {}, about {} per GPU",
            method.name(),
            framework.name(),
            placement.gpus,
            e.gpu_gb,
            placement.nodes,
            placement.sharding.name(),
            human_bytes(placement.per_gpu)
        );
        println!("{} (see README.md there)", a.out.display());
    }
    Ok(())
}
