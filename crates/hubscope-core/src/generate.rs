//! The generation loop: prefill, then one-token decode steps, streaming text as it is
//! produced. Every read-back is async, so the same loop runs in the browser.

use burn::tensor::{Int, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Model, read_f32};
use crate::sampling::{Sampler, top_logprobs};
use crate::text::{TextStream, Tokenizer};

async fn read_id(t: Tensor<1, Int>) -> Result<u32> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    let v = data
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    v.first()
        .map(|&x| x as u32)
        .ok_or_else(|| Error::Device("empty argmax".into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// `max_new_tokens` or the context limit was reached.
    Length,
    /// The caller asked to stop.
    Stop,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub token: String,
    pub logprob: f32,
}

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
    sampler: &mut Sampler,
    opts: RunOptions<'_>,
    mut on_step: impl FnMut(Step<'_>) -> bool,
) -> Result<Generation> {
    let gcfg = sampler.config().clone();
    gcfg.validate()?;
    let mut cache = model.new_cache();
    let mut stream = TextStream::new(false);
    let mut history = prompt.to_vec();
    let mut tokens = vec![];
    let mut text = String::new();
    let mut logprobs = vec![];
    let t0 = (opts.clock)();
    let mut logits = model.step(prompt, &mut cache)?;
    let mut t_first = t0;
    let mut finish = FinishReason::Length;
    for i in 0..gcfg.max_new_tokens {
        let id = if gcfg.is_plain_greedy() && opts.logprobs == 0 {
            read_id(logits.argmax(1).squeeze_dim::<1>(1)).await?
        } else {
            let mut v = read_f32(logits).await?;
            if opts.logprobs > 0 {
                logprobs.push(
                    top_logprobs(&v, opts.logprobs)
                        .into_iter()
                        .map(|(id, logprob)| TokenLogprob {
                            id,
                            token: tokenizer.map(|t| t.id_to_token(id)).unwrap_or_default(),
                            logprob,
                        })
                        .collect(),
                );
            }
            sampler.sample(&mut v, &history)
        };
        if i == 0 {
            t_first = (opts.clock)();
        }
        history.push(id);
        tokens.push(id);
        let is_eos = gcfg.eos_token_ids.contains(&id);
        // The end-of-sequence token ends the text; its own text (`<|im_end|>`) is not shown.
        let delta = match tokenizer {
            Some(t) if !is_eos => stream.push(t, id)?,
            _ => String::new(),
        };
        text.push_str(&delta);
        if !on_step(Step {
            id,
            text: &delta,
            index: i,
        }) {
            finish = FinishReason::Stop;
            break;
        }
        if is_eos {
            finish = FinishReason::Eos;
            break;
        }
        if let Some(tick) = opts.tick {
            tick().await;
        }
        if i + 1 == gcfg.max_new_tokens || cache.len() >= model.config.max_position_embeddings {
            break;
        }
        logits = model.step(&[id], &mut cache)?;
    }
    let tail = match tokenizer {
        Some(t) => stream.finish(t)?,
        None => String::new(),
    };
    if !tail.is_empty() {
        text.push_str(&tail);
        on_step(Step {
            id: *tokens.last().unwrap_or(&0),
            text: &tail,
            index: tokens.len(),
        });
    }
    let t_end = (opts.clock)();
    let prefill_s = t_first - t0;
    let decode_s = t_end - t_first;
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
