//! One sequence under generation, apart from the model call that advances it: its KV cache,
//! sampler, history, text stream and stop strings. It turns each step's logits into the next
//! token and the text that token releases. `generate` drives one sequence; a server's
//! scheduler drives many in one batched step (`Model::step_rows`) and reads their logits back
//! together (`read_rows`).

use burn::tensor::{Int, Tensor};
use serde::Serialize;

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::model::{Model, read_f32};
use crate::sampling::{Sampler, logprob_of, top_logprobs};
use crate::stop::StopStrings;
use crate::text::{TextStream, Tokenizer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token was produced.
    Eos,
    /// A stop string appeared (the text ends before it).
    StopString,
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

/// What one step of a sequence read back: the chosen id alone (argmax on the device), or the
/// full row of logits (sampling, a repetition penalty, or logprobs need them).
pub enum Row {
    Id(u32),
    Logits(Vec<f32>),
}

/// The token a step chose and what it means for the output.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub id: u32,
    /// 0-based index among the generated tokens.
    pub index: usize,
    /// Text released by this token (may be empty: an incomplete character, text held back
    /// for a stop string, or the end-of-sequence token). At the end, whatever was still held.
    pub text: String,
    /// The chosen token's own log-probability, and the top ones (when logprobs were asked).
    pub logprob: Option<TokenLogprob>,
    pub top_logprobs: Vec<TokenLogprob>,
    /// Set on the last token.
    pub finish: Option<FinishReason>,
}

/// A sequence's state between steps.
pub struct Sequence {
    pub cache: KvCache,
    sampler: Sampler,
    history: Vec<u32>,
    prompt_len: usize,
    stream: TextStream,
    stops: StopStrings,
    /// Report the chosen token's log-probability and this many top ones (None: nothing).
    logprobs: Option<usize>,
}

impl Sequence {
    /// A fresh sequence for `prompt` (not yet run: the caller prefills `cache` with it).
    /// `logprobs`: report each chosen token's log-probability and this many top ones.
    pub fn new(
        model: &Model,
        prompt: &[u32],
        sampler: Sampler,
        logprobs: Option<usize>,
        stops: &[String],
    ) -> Result<Self> {
        sampler.config().validate()?;
        Ok(Sequence {
            cache: model.new_cache(),
            sampler,
            history: prompt.to_vec(),
            prompt_len: prompt.len(),
            stream: TextStream::new(false),
            stops: StopStrings::new(stops),
            logprobs,
        })
    }

    /// Run the prompt through `model` (filling the cache) and read back the row that
    /// chooses the first token. Once, on a fresh sequence.
    pub async fn prefill(&mut self, model: &Model) -> Result<Row> {
        let logits = model.step(&self.history[..self.prompt_len], &mut self.cache)?;
        let mut rows = read_rows(logits, &[&*self]).await?;
        Ok(rows.pop().expect("read_rows gives one row per sequence"))
    }

    /// Whether the next token is the argmax of the logits with nothing else read.
    pub fn argmax_only(&self) -> bool {
        self.sampler.config().is_plain_greedy() && self.logprobs.is_none()
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.history[self.prompt_len..]
    }

    /// The last token, which the next step feeds to the model.
    pub fn last(&self) -> u32 {
        *self.history.last().expect("a sequence has a prompt")
    }

    /// Choose the next token from this step's row and say what it releases; `finish` is set
    /// when the sequence ends with it (EOS, stop string, `max_new_tokens`, or no room left in
    /// `max_positions`).
    pub fn choose(
        &mut self,
        tokenizer: Option<&Tokenizer>,
        row: Row,
        max_positions: usize,
    ) -> Result<Chosen> {
        let (mut logprob, mut top) = (None, vec![]);
        let id = match row {
            Row::Id(id) => id,
            Row::Logits(mut v) => {
                if let Some(k) = self.logprobs {
                    let token = |id: u32| tokenizer.map(|t| t.id_to_token(id)).unwrap_or_default();
                    top = top_logprobs(&v, k)
                        .into_iter()
                        .map(|(id, logprob)| TokenLogprob {
                            id,
                            token: token(id),
                            logprob,
                        })
                        .collect();
                    let id = self.sampler.sample(&mut v.clone(), &self.history);
                    logprob = Some(TokenLogprob {
                        id,
                        token: token(id),
                        logprob: logprob_of(&v, id),
                    });
                    id
                } else {
                    self.sampler.sample(&mut v, &self.history)
                }
            }
        };
        let index = self.history.len() - self.prompt_len;
        self.history.push(id);
        let config = self.sampler.config();
        let mut finish = None;
        let mut text = String::new();
        if config.eos_token_ids.contains(&id) {
            // The end-of-sequence token ends the text; its own text (`<|im_end|>`) is not shown.
            finish = Some(FinishReason::Eos);
        } else if let Some(t) = tokenizer {
            let released = self.stops.push(&self.stream.push(t, id)?);
            text = released.text;
            if released.stopped {
                finish = Some(FinishReason::StopString);
            }
        }
        if finish.is_none()
            && (index + 1 >= config.max_new_tokens || self.cache.len() >= max_positions)
        {
            finish = Some(FinishReason::Length);
        }
        if matches!(finish, Some(FinishReason::Eos | FinishReason::Length)) {
            text.push_str(&self.flush(tokenizer)?);
        }
        Ok(Chosen {
            id,
            index,
            text,
            logprob,
            top_logprobs: top,
            finish,
        })
    }

    /// Text still held back (an incomplete character, a possible stop string), given up
    /// when the sequence ends for another reason.
    pub fn flush(&mut self, tokenizer: Option<&Tokenizer>) -> Result<String> {
        let tail = match tokenizer {
            Some(t) => self.stream.finish(t)?,
            None => String::new(),
        };
        let mut text = self.stops.push(&tail).text;
        text.push_str(&self.stops.finish());
        Ok(text)
    }
}

/// One more token's forward for every sequence at once (continuous batching: each feeds its
/// last token, `Model::step_rows`), read back row by row in the order of `seqs`.
pub async fn step_all(model: &Model, seqs: &mut [&mut Sequence]) -> Result<Vec<Row>> {
    let ids: Vec<u32> = seqs.iter().map(|s| s.last()).collect();
    let logits = {
        let mut caches: Vec<&mut KvCache> = seqs.iter_mut().map(|s| &mut s.cache).collect();
        model.step_rows(&ids, &mut caches)?
    };
    let refs: Vec<&Sequence> = seqs.iter().map(|s| &**s).collect();
    read_rows(logits, &refs).await
}

/// Read one step's `logits: [rows, vocab]` back for the sequences of the batch, row `i` for
/// `seqs[i]`: only the argmax ids when every row needs nothing else, the full rows otherwise.
pub async fn read_rows(logits: Tensor<2>, seqs: &[&Sequence]) -> Result<Vec<Row>> {
    let [rows, vocab] = logits.dims();
    if rows != seqs.len() {
        return Err(Error::Invalid(format!(
            "{rows} rows of logits for {} sequences",
            seqs.len()
        )));
    }
    if seqs.iter().all(|s| s.argmax_only()) {
        let ids = read_ids(logits.argmax(1).squeeze_dim::<1>(1)).await?;
        return Ok(ids.into_iter().map(Row::Id).collect());
    }
    let v = read_f32(logits).await?;
    Ok(v.chunks(vocab).map(|r| Row::Logits(r.to_vec())).collect())
}

async fn read_ids(t: Tensor<1, Int>) -> Result<Vec<u32>> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    let v = data
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    Ok(v.into_iter().map(|x| x as u32).collect())
}
