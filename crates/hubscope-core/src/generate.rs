//! The generation loop: prefill, then one-token decode steps, streaming text as it is
//! produced. Every read-back is async, so the same loop runs in the browser.

use serde::Serialize;

use crate::error::Result;
use crate::model::Model;
use crate::sampling::Sampler;
pub use crate::sequence::{FinishReason, TokenLogprob};
use crate::sequence::{Sequence, read_rows};
use crate::text::Tokenizer;

/// One generated token as the stream callback sees it.
pub struct Step<'a> {
    pub id: u32,
    /// Text this token completes (empty while a multi-byte character is incomplete).
    pub text: &'a str,
    pub index: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub load_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub prompt_tokens: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub logprobs: Vec<Vec<TokenLogprob>>,
    pub finish_reason: FinishReason,
    pub timings: Timings,
}

/// A future the generation loop awaits after every token (a page yields to its event loop
/// there, so the text appears and a stop button can be clicked).
pub type Tick<'a> = &'a dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Options of one generation call besides sampling.
pub struct RunOptions<'a> {
    /// Top-K logprobs per step (0 = none).
    pub logprobs: usize,
    /// Seconds since some fixed point (`Instant` natively, `performance.now()` in a page).
    pub clock: &'a dyn Fn() -> f64,
    /// Awaited after every token when set.
    pub tick: Option<Tick<'a>>,
}

/// Generate after `prompt`. `on_step` sees each token as it is produced and returns false
/// to stop. Stops at an EOS id, at `max_new_tokens`, or at `max_position_embeddings`.
pub async fn generate(
    model: &Model,
    tokenizer: Option<&Tokenizer>,
    prompt: &[u32],
    sampler: Sampler,
    opts: RunOptions<'_>,
    mut on_step: impl FnMut(Step<'_>) -> bool,
) -> Result<Generation> {
    let logprobs = (opts.logprobs > 0).then_some(opts.logprobs);
    let max_new = sampler.config().max_new_tokens;
    let mut seq = Sequence::new(model, prompt, sampler, logprobs, &[])?;
    if max_new == 0 {
        // Nothing asked for: a defined, empty result (the prompt is not run).
        return Ok(Generation {
            prompt_tokens: prompt.to_vec(),
            tokens: vec![],
            text: String::new(),
            logprobs: vec![],
            finish_reason: FinishReason::Length,
            timings: Timings::default(),
        });
    }
    let max_positions = model.config.max_position_embeddings;
    let mut text = String::new();
    let mut logprobs = vec![];
    let t0 = (opts.clock)();
    let mut logits = model.step(prompt, &mut seq.cache)?;
    let mut t_first = t0;
    let finish = loop {
        let row = read_rows(logits, &[&seq]).await?.pop().expect("one row");
        let chosen = seq.choose(tokenizer, row, max_positions)?;
        if chosen.index == 0 {
            t_first = (opts.clock)();
        }
        if opts.logprobs > 0 {
            logprobs.push(chosen.top_logprobs);
        }
        text.push_str(&chosen.text);
        if !on_step(Step {
            id: chosen.id,
            text: &chosen.text,
            index: chosen.index,
        }) {
            let tail = seq.flush(tokenizer)?;
            if !tail.is_empty() {
                text.push_str(&tail);
                on_step(Step {
                    id: chosen.id,
                    text: &tail,
                    index: chosen.index + 1,
                });
            }
            break FinishReason::Stop;
        }
        if let Some(f) = chosen.finish {
            break f;
        }
        if let Some(tick) = opts.tick {
            tick().await;
        }
        logits = model.step(&[chosen.id], &mut seq.cache)?;
    };
    let t_end = (opts.clock)();
    let prefill_s = t_first - t0;
    let decode_s = t_end - t_first;
    let tokens = seq.generated().to_vec();
    let decoded = tokens.len().saturating_sub(1);
    Ok(Generation {
        prompt_tokens: prompt.to_vec(),
        tokens,
        text,
        logprobs,
        finish_reason: finish,
        timings: Timings {
            load_s: 0.0,
            prefill_s,
            decode_s,
            prefill_tok_s: if prefill_s > 0.0 {
                prompt.len() as f64 / prefill_s
            } else {
                0.0
            },
            decode_tok_s: if decode_s > 0.0 {
                decoded as f64 / decode_s
            } else {
                0.0
            },
        },
    })
}
