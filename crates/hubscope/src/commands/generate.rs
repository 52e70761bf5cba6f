//! `hubscope generate`: text from a prompt (plain or chat), streamed to stdout or as one JSON
//! object with log-probabilities and timings.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use hubscope_core::generate::{Generation, RunOptions, Step};
use hubscope_core::prompt::Prompt;
use hubscope_core::sampling::{Overrides, Sampler};
use serde_json::json;

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;
use crate::hub::local_or_download;
use crate::load::load;

#[derive(Args)]
pub struct GenerateArgs {
    /// Model folder or Hub repo id (`org/name[@rev]`, downloaded into the cache first).
    pub model: String,
    #[command(flatten)]
    pub hub: crate::hub::HubArgs,
    #[arg(long, required_unless_present = "prompt_ids")]
    pub prompt: Option<String>,
    /// Token ids instead of text, e.g. 785,3974,13876 (no tokenizer needed).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["prompt", "chat"])]
    pub prompt_ids: Option<Vec<u32>>,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message (with --chat).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// 0 means greedy. Defaults come from generation_config.json.
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    #[arg(long, allow_negative_numbers = true)]
    pub repetition_penalty: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Report the top K log-probabilities of every step (with --json).
    #[arg(long, default_value_t = 0)]
    pub logprobs: usize,
    /// Apply a LoRA adapter folder (hubscope's or one made by PEFT).
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    if a.system.is_some() && !a.chat {
        bail!("--system needs --chat");
    }
    let folder = ModelFolder::open(&local_or_download(&a.model, &a.hub)?.to_string_lossy())?;
    let loaded = load(
        &folder,
        &a.dev,
        a.adapter.as_deref(),
        a.prompt_ids.is_none(),
    )?;
    let g = loaded.generation.clone().with_overrides(&Overrides {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        max_new_tokens: a.max_new_tokens,
        seed: Some(a.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        })),
    })?;
    let (ids, rendered) = match (&a.prompt_ids, &loaded.tokenizer, &a.prompt) {
        (Some(ids), _, _) if ids.is_empty() => {
            bail!("the prompt is empty: give some text (or ids) to continue")
        }
        (Some(ids), _, _) => (ids.clone(), None),
        (None, Some(tok), Some(text)) => {
            let prompt = Prompt {
                text: text.clone(),
                chat: a.chat,
                system: a.system.clone(),
            };
            let e = prompt.encode(tok)?;
            (e.ids, Some(e.text))
        }
        _ => bail!("give --prompt (with a tokenizer.json) or --prompt-ids"),
    };
    let sampler = Sampler::new(g);
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64();
    let stream = !a.json;
    let mut out = std::io::stdout();
    let result: Generation = pollster::block_on(hubscope_core::generate(
        &loaded.model,
        loaded.tokenizer.as_ref(),
        &ids,
        sampler,
        RunOptions {
            logprobs: a.logprobs,
            clock: &clock,
            tick: None,
        },
        |step: Step<'_>| {
            if stream {
                let _ = out.write_all(step.text.as_bytes());
                let _ = out.flush();
            }
            true
        },
    ))?;
    let mut result = result;
    result.timings.load_s = loaded.load_s;
    if a.json {
        let v = json!({
            "prompt": rendered,
            "prompt_tokens": result.prompt_tokens,
            "tokens": result.tokens,
            "text": result.text,
            "logprobs": result.logprobs,
            "finish_reason": result.finish_reason,
            "timings": result.timings,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!();
    }
    Ok(())
}
