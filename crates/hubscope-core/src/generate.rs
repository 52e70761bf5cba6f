//! The model with everything it needs to run (config, rotary tables, device), and the
//! generation loop: prefill, then one-token decode steps, streaming text as it is produced.
//! Every read-back is async, so the same loop runs in the browser.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::{CausalLm, Trace};
use crate::rope::Rope;
use crate::sampling::{Sampler, top_logprobs};
use crate::text::{TextStream, Tokenizer};
use crate::weights::{ComputeDtype, LoadReport, build_model, random_weights, read_checkpoint};

/// A loaded model, ready to run.
pub struct Model {
    pub config: ModelConfig,
    pub lm: CausalLm,
    pub rope: Rope,
    pub dtype: ComputeDtype,
    pub device: Device,
    pub report: LoadReport,
}

impl Model {
    fn assemble(
        config: ModelConfig,
        lm: CausalLm,
        dtype: ComputeDtype,
        device: &Device,
        report: LoadReport,
    ) -> Self {
        Model {
            rope: Rope::new(&config),
            config,
            lm,
            dtype,
            device: device.clone(),
            report,
        }
    }

    /// Load from safetensors files given as (file name, bytes).
    pub fn from_safetensors(
        config: ModelConfig,
        files: &[(String, &[u8])],
        dtype: ComputeDtype,
        device: &Device,
    ) -> Result<Self> {
        let (tensors, report) = read_checkpoint(&config, files, dtype)?;
        let lm = build_model(&config, tensors, dtype, device)?;
        Ok(Model::assemble(config, lm, dtype, device, report))
    }

    /// Load from a burnpack file (what `hubscope export --format burnpack` writes).
    pub fn from_burnpack(
        config: ModelConfig,
        bytes: Vec<u8>,
        dtype: ComputeDtype,
        device: &Device,
    ) -> Result<Self> {
        let (header, mut data) = crate::export::read_burnpack(crate::export::BURNPACK_FILE, bytes)?;
        let report = crate::weights::plan_load(&config, &[header])?;
        let mut tensors = std::collections::HashMap::new();
        for e in report.entries.iter().filter(|e| e.status == "loaded") {
            if let Some(d) = data.remove(&e.tensor) {
                tensors.insert(e.tensor.clone(), d.convert_dtype(dtype.burn()));
            }
        }
        let lm = build_model(&config, tensors, dtype, device)?;
        Ok(Model::assemble(config, lm, dtype, device, report))
    }

    /// A model of this config with random weights (benchmarks of a shape, no download).
    pub fn random(
        config: ModelConfig,
        dtype: ComputeDtype,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let tensors = random_weights(&config, dtype, seed);
        let lm = build_model(&config, tensors, dtype, device)?;
        Ok(Model::assemble(
            config,
            lm,
            dtype,
            device,
            LoadReport::default(),
        ))
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.config.num_hidden_layers,
            self.config.max_position_embeddings,
        )
    }

    fn ids_tensor(&self, ids: &[u32]) -> Tensor<2, Int> {
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(data, [1, ids.len()]), &self.device)
    }

    fn check_room(&self, cache: &KvCache, n: usize) -> Result<()> {
        let requested = cache.len() + n;
        if requested > self.config.max_position_embeddings {
            return Err(Error::ContextOverflow {
                requested,
                max: self.config.max_position_embeddings,
            });
        }
        Ok(())
    }

    /// Every id names a row of the embedding (an id past it would index out of bounds).
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        match ids.iter().find(|&&i| i as usize >= vocab) {
            Some(i) => Err(Error::Invalid(format!(
                "token id {i} is outside the vocabulary (vocab_size {vocab})"
            ))),
            None => Ok(()),
        }
    }

    /// Run `ids` after what the cache holds; logits of the last position, `[1, vocab]`.
    pub fn step(&self, ids: &[u32], cache: &mut KvCache) -> Result<Tensor<2>> {
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt: nothing to run".into()));
        }
        self.check_ids(ids)?;
        self.check_room(cache, ids.len())?;
        Ok(self
            .lm
            .forward_last(self.ids_tensor(ids), &self.rope, cache))
    }

    /// Logits at every position plus the residual stream per layer (for checking against
    /// transformers). `[1, s, vocab]`.
    pub fn forward_traced(&self, ids: &[u32]) -> Result<(Tensor<3>, Trace)> {
        let mut cache = self.new_cache();
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt: nothing to run".into()));
        }
        self.check_ids(ids)?;
        self.check_room(&cache, ids.len())?;
        let mut trace = Trace::default();
        let h = self.lm.hidden(
            self.ids_tensor(ids),
            &self.rope,
            &mut cache,
            Some(&mut trace),
        );
        Ok((self.lm.logits(h), trace))
    }
}

/// Read a float tensor back as f32 values.
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t
        .cast(DType::F32)
        .into_data_async()
        .await
        .map_err(|e| Error::Device(format!("{e:?}")))?;
    data.try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("{e:?}")))
}

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
