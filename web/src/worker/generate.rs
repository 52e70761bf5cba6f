//! Generation in the worker: the prompt through the model's tokenizer and chat template, the
//! core's generation loop with a turn of the event loop after every token (where a Stop from
//! the page is read), the text sent to the page as it streams.

use hubscope_core::generate::{FinishReason, RunOptions};
use hubscope_core::prompt::Prompt;
use hubscope_core::sampling::{GenerationConfig, Overrides, Sampler};

use super::load::{Loaded, kept};
use super::{post, stopped};
use crate::error::AppError;
use crate::fetch::{next_tick, now_ms};
use crate::protocol::{Event, Finish, Generated, ModelRef, Phase};

/// Load (or reuse) the model and generate.
pub async fn generate(
    model: &ModelRef,
    prompt: &Prompt,
    sampling: &Overrides,
) -> Result<Event, AppError> {
    let loaded = kept(model).await?;
    let ids = prompt.encode(&loaded.tokenizer)?.ids;
    // The page's settings over the model's defaults, checked as the CLI's are.
    let g = loaded.generation.clone().with_overrides(sampling)?;
    stream(&loaded, &ids, g).await
}

/// Generate from `ids` on a loaded model, streaming text to the page.
pub async fn stream(
    loaded: &Loaded,
    ids: &[u32],
    generation: GenerationConfig,
) -> Result<Event, AppError> {
    post(&Event::Phase(Phase::Prefill { tokens: ids.len() }), &[]);
    let clock = || now_ms() / 1000.0;
    let tick = || next_tick();
    let mut first: Option<f64> = None;
    let out = hubscope_core::generate(
        &loaded.model,
        Some(&loaded.tokenizer),
        ids,
        Sampler::new(generation),
        RunOptions {
            logprobs: 0,
            clock: &clock,
            tick: Some(&tick),
        },
        |s| {
            let now = now_ms();
            let since = *first.get_or_insert(now);
            if !s.text.is_empty() {
                post(&Event::Text(s.text.to_string()), &[]);
            }
            let tokens = s.index + 1;
            let tok_s = if tokens > 1 {
                (tokens - 1) as f64 / ((now - since) / 1000.0).max(1e-6)
            } else {
                0.0
            };
            post(&Event::Phase(Phase::Generating { tokens, tok_s }), &[]);
            !stopped()
        },
    )
    .await?;
    Ok(Event::Generated(Generated {
        finish: match out.finish_reason {
            FinishReason::Stop => Finish::Stopped,
            _ => Finish::Done,
        },
        prefill_tok_s: out.timings.prefill_tok_s,
        decode_tok_s: out.timings.decode_tok_s,
        from_cache: loaded.from_cache,
        not_kept: loaded.not_kept.clone(),
    }))
}
