//! `hubscope perplexity`: how well a model predicts a text (llama.cpp's `llama-perplexity`,
//! one window): the text tokenized, its first token a prompt, then every following token fed
//! one decode step at a time — the path generation takes, with its kernels — scoring each
//! token's log-probability. With `--json`, also each step's top token, so two runs (a quantized
//! file and its float weights, say) can be compared position by position.

use anyhow::{Result, bail};
use clap::Args;
use hubscope_core::model::read_f32;
use hubscope_core::sampling::argmax;
use serde_json::json;

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;
use crate::hub::local_or_download;
use crate::load::load;

#[derive(Args)]
pub struct PerplexityArgs {
    /// Model folder, .gguf file or Hub repo id.
    pub model: String,
    #[command(flatten)]
    pub hub: crate::hub::HubArgs,
    /// The text to score (UTF-8).
    #[arg(long)]
    pub text: std::path::PathBuf,
    /// Score at most this many tokens of it.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub dev: DeviceArgs,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PerplexityArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.text)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", a.text.display()))?;
    let folder = ModelFolder::open(&local_or_download(&a.model, &a.hub)?.to_string_lossy())?;
    let loaded = load(&folder, &a.dev, None, true)?;
    let Some(tok) = loaded.tokenizer.as_ref() else {
        bail!("{}: no tokenizer", folder.place());
    };
    let mut ids = tok.encode(&text, true)?;
    ids.truncate(a.max_tokens + 1);
    if ids.len() < 2 {
        bail!("{}: fewer than two tokens to score", a.text.display());
    }
    let model = &loaded.model;
    let mut cache = model.new_cache();
    let mut logits = model.step(&ids[..1], &mut cache)?;
    let (mut nll, mut top) = (0f64, Vec::with_capacity(ids.len() - 1));
    for (i, &next) in ids[1..].iter().enumerate() {
        let row = pollster::block_on(read_f32(logits))?;
        top.push(argmax(&row));
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        nll += lse - row[next as usize] as f64;
        if i + 2 < ids.len() {
            logits = model.step(&[next], &mut cache)?;
        } else {
            break;
        }
    }
    let n = (ids.len() - 1) as f64;
    let ppl = (nll / n).exp();
    if a.json {
        println!(
            "{}",
            json!({"model": a.model, "tokens": ids.len() - 1, "perplexity": ppl,
                "mean_nll": nll / n, "top": top})
        );
    } else {
        println!("{} tokens, perplexity {ppl:.4}", ids.len() - 1);
    }
    Ok(())
}
