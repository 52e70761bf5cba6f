//! `hubscope finetune`: LoRA training on the same model, written as a PEFT adapter folder.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::lora::{
    AdamW, AdapterConfig, TARGETS, adapter_tensors, attach, init_adapter, make_trainable,
    parse_jsonl, render_example, train_batch, trainable_params,
};
use hubscope_core::{Model, ModelConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::folder::ModelFolder;
use crate::hub::{HubArgs, local_or_download};
use crate::run::DeviceArgs;

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
    /// Dropout on the adapter input (only 0 is supported so far).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    pub target: Vec<String>,
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
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Output folder for the adapter (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Print every step's loss as JSON lines, then a summary.
    #[arg(long)]
    pub json: bool,
}

/// Read a PEFT adapter folder.
pub fn read_adapter(dir: &Path) -> Result<(AdapterConfig, Vec<u8>)> {
    let cfg_path = dir.join("adapter_config.json");
    let cfg =
        std::fs::read(&cfg_path).with_context(|| format!("{}: cannot read", cfg_path.display()))?;
    let cfg = AdapterConfig::from_json(&cfg).with_context(|| dir.display().to_string())?;
    let w_path = dir.join("adapter_model.safetensors");
    let w = std::fs::read(&w_path).with_context(|| format!("{}: cannot read", w_path.display()))?;
    Ok((cfg, w))
}

/// Attach the adapter in `dir` to a loaded model.
pub fn apply_adapter(model: &mut Model, dir: &Path) -> Result<usize> {
    let (cfg, w) = read_adapter(dir)?;
    attach(model, &cfg, &w).with_context(|| dir.display().to_string())
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    if a.lora_dropout != 0.0 {
        bail!(
            "--lora-dropout {}: only 0 is supported so far",
            a.lora_dropout
        );
    }
    if a.batch_size == 0 || a.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    crate::export::ensure_free_target(&a.out)?;
    let text = std::fs::read_to_string(&a.data)
        .with_context(|| format!("{}: cannot read", a.data.display()))?;
    let conversations = parse_jsonl(&text).with_context(|| a.data.display().to_string())?;
    let dir = local_or_download(&a.model, &a.hub)?;
    let folder = ModelFolder::open(&dir.to_string_lossy())?;
    let tok_bytes = folder
        .read("tokenizer.json")
        .context("tokenizer.json is needed to render the data")?;
    let tok = hubscope_core::text::Tokenizer::from_bytes(
        &tok_bytes,
        folder.read_optional("tokenizer_config.json")?.as_deref(),
    )?;
    let examples = conversations
        .iter()
        .map(|m| render_example(&tok, m))
        .collect::<hubscope_core::Result<Vec<_>>>()?;
    let config = ModelConfig::from_json(&folder.read("config.json")?)?;
    // Train on an autodiff device: gradients flow to the adapters only.
    let device = a.dev.device()?.autodiff();
    let mut model = crate::run::load_model_on(&folder, config, &a.dev, &device)?;
    let cfg = match &a.init_adapter {
        Some(d) => {
            let (cfg, w) = read_adapter(d)?;
            attach(&mut model, &cfg, &w).with_context(|| d.display().to_string())?;
            cfg
        }
        None => {
            for t in &a.target {
                if !TARGETS.contains(&t.as_str()) {
                    bail!("--target {t}: not a linear layer ({})", TARGETS.join(", "));
                }
            }
            let cfg = AdapterConfig {
                r: a.lora_rank,
                lora_alpha: a.lora_alpha,
                lora_dropout: 0.0,
                target_modules: a.target.clone(),
                use_rslora: false,
                use_dora: false,
                bias: "none".into(),
                base_model_name_or_path: None,
            };
            init_adapter(&mut model, &cfg, a.seed);
            cfg
        }
    };
    make_trainable(&mut model);
    let rss_loaded = crate::bench::rss().1;
    let trainable = trainable_params(&mut model);
    let steps_per_epoch = examples.len().div_ceil(a.batch_size);
    let total_steps = steps_per_epoch * a.epochs;
    let bar = ProgressBar::with_draw_target(
        Some(total_steps as u64),
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
    let mut opt = AdamW::new(a.lr, a.weight_decay);
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut losses = vec![];
    for epoch in 0..a.epochs {
        for (s, batch) in examples.chunks(a.batch_size).enumerate() {
            let loss = pollster::block_on(train_batch(&mut model, batch, &mut opt))?;
            tokens += batch.iter().map(|e| e.ids.len()).sum::<usize>();
            let tok_s = tokens as f64 / t0.elapsed().as_secs_f64();
            bar.set_message(format!("{loss:.4} · {tok_s:.0} tok/s"));
            bar.inc(1);
            if a.json {
                println!(
                    "{}",
                    json!({"epoch": epoch, "step": epoch * steps_per_epoch + s, "loss": loss, "tokens_per_s": tok_s})
                );
            }
            losses.push(loss);
        }
    }
    bar.finish_and_clear();
    let tensors = pollster::block_on(adapter_tensors(&mut model))?;
    let files = vec![
        hubscope_core::export::OutFile {
            name: "adapter_config.json".into(),
            bytes: cfg.to_json(&a.model),
        },
        hubscope_core::export::OutFile {
            name: "adapter_model.safetensors".into(),
            bytes: safetensors_bytes(&tensors)?,
        },
    ];
    crate::export::write_atomically(&a.out, &files)?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        let (peak, _) = crate::bench::rss();
        println!(
            "{}",
            json!({"out": a.out, "trainable_params": trainable, "steps": losses.len(), "final_loss": losses.last(), "seconds": secs,
                "tokens_per_s": tokens as f64 / secs, "peak_rss_bytes": peak, "rss_after_load_bytes": rss_loaded})
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

fn safetensors_bytes(
    tensors: &[(String, hubscope_core::burn::tensor::TensorData)],
) -> Result<Vec<u8>> {
    let mut views = vec![];
    for (n, d) in tensors {
        views.push((
            n.clone(),
            safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                d.shape().to_vec(),
                d.as_bytes(),
            )?,
        ));
    }
    let meta: std::collections::HashMap<String, String> =
        [("format".to_string(), "pt".to_string())].into();
    Ok(safetensors::serialize(views, Some(meta))?)
}
