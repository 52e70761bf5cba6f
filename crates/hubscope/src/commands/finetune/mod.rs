//! `hubscope finetune`: LoRA training on the same model, written as a PEFT adapter folder
//! (or, with `--emit`, the run handed to LLaMA-Factory or TRL: `emit.rs`).

mod emit;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::lora::{
    FineTuneSettings, adapter_files, check, quantized_base, trainable_params,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;
use crate::hub::{HubArgs, local_or_download};
use crate::load::{WeightUse, load_model, read_adapter, text_side};
use crate::output::{ensure_free_target, write_atomically};

#[derive(Args)]
pub struct FinetuneArgs {
    /// Model folder or Hub repo id.
    pub model: String,
    #[command(flatten)]
    pub hub: HubArgs,
    /// JSON lines: {"messages": [...]} or {"instruction", "input", "output"}.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Dropout on the adapter's input while training (PEFT's lora_dropout).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// Linear layers to adapt (PEFT's target_modules, comma-separated). Default: every
    /// projection of the family (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj;
    /// Phi-3: qkv_proj,o_proj,gate_up_proj,down_proj; in a mixture of experts the experts'
    /// too, as PEFT matches them by name).
    #[arg(long, value_delimiter = ',')]
    pub target: Option<Vec<String>>,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Start from this PEFT adapter (its rank, alpha and targets win).
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep every layer's activations for the backward pass instead of recomputing each
    /// decoder layer there (gradient checkpointing, the default: less memory, about a third
    /// more compute).
    #[arg(long)]
    pub no_gradient_checkpointing: bool,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Output folder for the adapter (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Print every step's loss as JSON lines, then a summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub emit: emit::EmitArgs,
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    // Bad settings and bad data lines fail here, before the model is fetched or read.
    let settings = FineTuneSettings {
        rank: a.lora_rank,
        alpha: a.lora_alpha,
        dropout: a.lora_dropout,
        targets: a.target.clone(),
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        gradient_checkpointing: !a.no_gradient_checkpointing,
    };
    ensure_free_target(&a.out)?;
    let data = std::fs::read_to_string(&a.data)
        .with_context(|| format!("{}: cannot read", a.data.display()))?;
    let checked = check(&data, &settings).with_context(|| a.data.display().to_string())?;
    if let Some(framework) = a.emit.emit {
        return emit::run(&a, framework, checked, &settings);
    }
    let init = a.init_adapter.as_deref().map(read_adapter).transpose()?;
    let dir = local_or_download(&a.model, &a.hub)?;
    let folder = ModelFolder::open(&dir.to_string_lossy())?;
    let text = text_side(&folder)?;
    let tok = text.tokenizer.as_ref().with_context(|| {
        format!(
            "{}: missing (needed to render the data)",
            folder.path("tokenizer.json").display()
        )
    })?;
    let mut run = checked.render(&text.config, tok)?;
    warn_if_it_does_not_fit(&a, &text.config, &run)?;
    // The training's own peak: from here (the tokenizer's parsing peak is not the model's).
    crate::process::release_freed_memory();
    let rss_before = crate::process::rss().1;
    crate::process::reset_peak();
    // Train on an autodiff device: gradients flow to the adapters only.
    let device = a.dev.device()?.autodiff();
    let dtype = a.dev.dtype()?;
    // A GGUF file's blocks (or --dtype q8_0|q4_0|q4_k) stay quantized: QLoRA.
    let mut model = load_model(
        &folder,
        text.config,
        dtype,
        &device,
        None,
        WeightUse::KeepBlocks,
    )?;
    if a.no_gradient_checkpointing && quantized_base(&mut model) {
        bail!(
            "--no-gradient-checkpointing: a quantized base (QLoRA) trains with gradient \
             checkpointing only; without it every layer's decoded weights would stay in memory"
        );
    }
    let cfg = run
        .start(
            &mut model,
            init.as_ref().map(|(c, w)| (c.clone(), w.as_slice())),
        )
        .with_context(|| {
            a.init_adapter
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "adapter".into())
        })?;
    let (load_peak, rss_loaded) = crate::process::rss();
    // Loading holds the file's bytes and the built tensors at once for a moment; training's
    // own peak is measured from here (what the planner's fine-tuning rows model).
    crate::process::release_freed_memory();
    crate::process::reset_peak();
    let trainable = trainable_params(&mut model);
    let bar = ProgressBar::with_draw_target(
        Some(run.trainer.total_steps() as u64),
        if std::io::stderr().is_terminal() && !a.json {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:30} step {pos}/{len} loss {msg} ETA {eta}")
            .expect("template"),
    );
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut losses = vec![];
    while let Some(s) = pollster::block_on(run.trainer.step(&mut model))? {
        tokens = s.tokens;
        let tok_s = tokens as f64 / t0.elapsed().as_secs_f64();
        bar.set_message(format!("{:.4} · {tok_s:.0} tok/s", s.loss));
        bar.inc(1);
        if a.json {
            println!(
                "{}",
                json!({"epoch": s.epoch, "step": s.step, "loss": s.loss, "tokens_per_s": tok_s})
            );
        }
        losses.push(s.loss);
    }
    bar.finish_and_clear();
    let files = pollster::block_on(adapter_files(&mut model, &cfg, &a.model))?;
    write_atomically(&a.out, &files)?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let (training_peak, _) = crate::process::rss();
        println!(
            "{}",
            json!({"out": a.out, "trainable_params": trainable, "steps": losses.len(), "final_loss": losses.last(), "seconds": secs,
                "tokens_per_s": tokens as f64 / secs, "peak_rss_bytes": training_peak.max(load_peak),
                "training_peak_rss_bytes": training_peak, "load_peak_rss_bytes": load_peak,
                "rss_before_load_bytes": rss_before, "rss_after_load_bytes": rss_loaded})
        );
    } else {
        println!(
            "trained {trainable} LoRA parameters (r={}, alpha={}) for {} steps: loss {:.4} → {:.4}, {:.0} tokens/s",
            cfg.r,
            cfg.lora_alpha,
            losses.len(),
            losses[0],
            losses[losses.len() - 1],
            tokens as f64 / secs
        );
        println!("{}", a.out.display());
    }
    Ok(())
}

/// Where the planner's row for this run (LoRA, or QLoRA on a quantized base; the longest
/// example's tokens) needs more than this machine has available, say so before loading, and
/// how to hand the run to a GPU cluster instead. Only for the CPU device, whose memory is the
/// machine's.
fn warn_if_it_does_not_fit(
    a: &FinetuneArgs,
    config: &hubscope_core::ModelConfig,
    run: &hubscope_core::lora::Prepared,
) -> Result<()> {
    use hubscope_core::plan::{PlanDtype, plan};
    if a.dev.device != "cpu" {
        return Ok(());
    }
    let dtype = a.dev.dtype()?;
    let p = plan(
        config,
        run.longest,
        a.batch_size,
        a.lora_rank,
        PlanDtype::from(dtype),
    );
    let row = if dtype.quant().is_some() { 2 } else { 1 };
    let (Some(need), Some(have)) = (
        p.fine_tuning.get(row).map(|r| r.total),
        crate::process::available_memory(),
    ) else {
        return Ok(());
    };
    if need > have {
        eprintln!(
            "warning: the planner puts this run ({}) at {}, and this machine has {} available; \
             `--emit llamafactory` or `--emit trl` writes the same run for GPUs instead",
            p.fine_tuning[row].method,
            hubscope_core::units::human_bytes(need),
            hubscope_core::units::human_bytes(have)
        );
    }
    Ok(())
}
