//! LoRA training: the causal-LM loss, torch-exact AdamW over the adapters only, and the one
//! `Trainer` schedule the CLI and the page both step.

use burn::module::Param;
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};

use super::adapter::{AdapterConfig, adapters, attach, has_dropout, init_adapter, make_trainable};
use super::backward::{Activations, Grads, Pass, backward};
use crate::error::{Error, Result};
use crate::model::Model;

/// Mean cross-entropy of `labels` (−100 = ignored) under the model, shifted by one as
/// transformers does: the logits at position t are scored against label t+1. `[1]`.
pub fn causal_lm_loss(model: &Model, ids: &[u32], labels: &[i64]) -> Result<Tensor<1>> {
    let (sum, count) = causal_lm_loss_sum(model, ids, labels)?;
    Ok(sum / count as f64)
}

/// The summed cross-entropy of an example's labelled tokens `[1]`, and how many there are.
pub fn causal_lm_loss_sum(
    model: &Model,
    ids: &[u32],
    labels: &[i64],
) -> Result<(Tensor<1>, usize)> {
    check_example(ids, labels)?;
    let (logits, _) = model.forward_traced(ids)?;
    let [b, n, vocab] = logits.dims();
    let (sum, count) = next_token_loss(
        model,
        logits.slice([0..b, 0..n - 1, 0..vocab]),
        &labels[1..],
    );
    if count == 0 {
        return Err(no_labels());
    }
    Ok((sum, count))
}

/// An example has at least two tokens and one label per token, and some token to learn.
pub(super) fn check_example(ids: &[u32], labels: &[i64]) -> Result<()> {
    if ids.len() < 2 || labels.len() != ids.len() {
        return Err(Error::Invalid(
            "an example needs at least two tokens and one label per token".into(),
        ));
    }
    if labels[1..].iter().all(|&l| l < 0) {
        return Err(no_labels());
    }
    Ok(())
}

fn no_labels() -> Error {
    Error::Invalid("an example has no labelled tokens after its prompt".into())
}

/// The summed cross-entropy of `logits: [1, m, vocab]` against `targets` (row `i` scored
/// against `targets[i]`, the next token's label; −100 = ignored) `[1]`, and how many rows
/// count. transformers' causal-LM loss, shifted by the caller.
pub(super) fn next_token_loss(
    model: &Model,
    logits: Tensor<3>,
    targets: &[i64],
) -> (Tensor<1>, usize) {
    let m = targets.len();
    let vocab = model.config.vocab_size;
    // [m, vocab] log-probabilities of the next token
    let lp = log_softmax(logits.cast(DType::F32).reshape([m, vocab]), 1);
    let keep: Vec<f32> = targets
        .iter()
        .map(|&l| if l >= 0 { 1.0 } else { 0.0 })
        .collect();
    let count = targets.iter().filter(|&&l| l >= 0).count();
    let idx: Vec<i64> = targets.iter().map(|&l| l.max(0)).collect();
    let device: Device = model.device.clone();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [m, 1]), &device);
    let picked = lp.gather(1, idx).reshape([m]);
    let keep = Tensor::<1>::from_data(TensorData::new(keep, [m]), (&device, DType::F32));
    ((picked * keep).sum().neg(), count)
}

/// One training example: token ids and labels (−100 where the loss ignores the token).
#[derive(Debug, Clone)]
pub struct Example {
    pub ids: Vec<u32>,
    pub labels: Vec<i64>,
}

/// AdamW exactly as `torch.optim.AdamW` computes it (decoupled weight decay, bias-corrected
/// moments, eps added after the square root), over the LoRA parameters only.
pub struct AdamW {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Per parameter, as torch keeps it: its own step count and two moments, from the first
    /// step it had a gradient (an expert no token chose gets none, and is left alone).
    state: Vec<Option<Moments>>,
}

struct Moments {
    step: i32,
    m: Tensor<2>,
    v: Tensor<2>,
}

impl AdamW {
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamW {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            state: vec![],
        }
    }
}

/// Put an adapter on a model that lives on an autodiff device and make it the only trainable
/// part: `init` (a PEFT adapter's config and `adapter_model.safetensors`) when given — its
/// rank, alpha and targets win — else a fresh one with `fresh`'s settings, PEFT-initialised
/// from `seed`. `seed` also seeds the dropout masks. Returns the adapter's config.
pub fn start_training(
    model: &mut Model,
    init: Option<(AdapterConfig, &[u8])>,
    fresh: AdapterConfig,
    seed: u64,
) -> Result<AdapterConfig> {
    let cfg = match init {
        Some((cfg, weights)) => {
            attach(model, &cfg, weights)?;
            cfg
        }
        None => {
            init_adapter(model, &fresh, seed);
            fresh
        }
    };
    model.device.seed(seed);
    make_trainable(model);
    Ok(cfg)
}

/// One optimizer step's outcome.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub epoch: usize,
    /// 0-based, over all epochs.
    pub step: usize,
    pub total_steps: usize,
    /// The batch's mean loss before the update.
    pub loss: f32,
    /// Tokens seen so far, this step's included.
    pub tokens: usize,
}

/// The training schedule shared by the CLI and the page: the examples in file order, in
/// batches, for some epochs, one AdamW step per batch.
pub struct Trainer {
    examples: Vec<Example>,
    batch_size: usize,
    epochs: usize,
    opt: AdamW,
    activations: Activations,
    next: usize,
    tokens: usize,
}

/// A schedule needs at least one example per batch and one epoch.
pub fn check_schedule(batch_size: usize, epochs: usize) -> Result<()> {
    if batch_size == 0 || epochs == 0 {
        return Err(Error::Invalid(
            "batch size and epochs must be at least 1".into(),
        ));
    }
    Ok(())
}

impl Trainer {
    pub fn new(
        examples: Vec<Example>,
        batch_size: usize,
        epochs: usize,
        opt: AdamW,
        activations: Activations,
    ) -> Result<Self> {
        if examples.is_empty() {
            return Err(Error::Invalid("no training examples".into()));
        }
        check_schedule(batch_size, epochs)?;
        Ok(Trainer {
            examples,
            batch_size,
            epochs,
            opt,
            activations,
            next: 0,
            tokens: 0,
        })
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.examples.len().div_ceil(self.batch_size)
    }

    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.epochs
    }

    /// Run the next step; `None` once the schedule is done.
    pub async fn step(&mut self, model: &mut Model) -> Result<Option<StepReport>> {
        if self.next >= self.total_steps() {
            return Ok(None);
        }
        let per = self.steps_per_epoch();
        let (epoch, s) = (self.next / per, self.next % per);
        let end = ((s + 1) * self.batch_size).min(self.examples.len());
        let batch = &self.examples[s * self.batch_size..end];
        let loss = train_batch(model, batch, &mut self.opt, self.activations).await?;
        self.tokens += batch.iter().map(|e| e.ids.len()).sum::<usize>();
        let report = StepReport {
            epoch,
            step: self.next,
            total_steps: self.total_steps(),
            loss,
            tokens: self.tokens,
        };
        self.next += 1;
        Ok(Some(report))
    }
}

/// One optimizer step on one example; returns the example's loss before the update.
pub async fn train_step(
    model: &mut Model,
    ex: &Example,
    opt: &mut AdamW,
    activations: Activations,
) -> Result<f32> {
    train_batch(model, std::slice::from_ref(ex), opt, activations).await
}

/// One optimizer step on a batch; returns the batch's loss before the update: the mean over
/// all labelled tokens of the batch, as transformers' causal-LM loss of a padded batch is
/// (not the mean of per-example means). Each example is backpropagated on its own (its
/// activations kept or recomputed per layer), the gradients summed.
pub async fn train_batch(
    model: &mut Model,
    batch: &[Example],
    opt: &mut AdamW,
    activations: Activations,
) -> Result<f32> {
    if batch.is_empty() {
        return Err(Error::Invalid("an empty batch".into()));
    }
    // The batch's labelled tokens, known before any pass: each example's loss is scaled by
    // their count, so the summed gradients are those of the batch's mean.
    let mut tokens = 0usize;
    for ex in batch {
        check_example(&ex.ids, &ex.labels)?;
        tokens += ex.labels[1..].iter().filter(|&&l| l >= 0).count();
    }
    let params: Vec<Tensor<2>> = adapters(model).iter().map(|p| p.val()).collect();
    let pass = Pass {
        params: &params,
        how: activations,
        dropout: has_dropout(model),
    };
    let mut grads = Grads::new(params.len());
    let mut sum = 0.0f64;
    for ex in batch {
        let (l, _) = backward(model, &pass, ex, 1.0 / tokens as f64, &mut grads).await?;
        sum += l as f64;
    }
    let value = (sum / tokens as f64) as f32;
    let (b1, b2) = opt.betas;
    let params = adapters(model);
    if opt.state.is_empty() {
        opt.state = params.iter().map(|_| None).collect();
    }
    for ((p, state), g) in params.into_iter().zip(opt.state.iter_mut()).zip(grads.0) {
        // No gradient (a mixture-of-experts adapter whose expert no token chose): torch's
        // AdamW skips the parameter, weight decay and step count included.
        let Some(g) = g else {
            continue;
        };
        let w = p.val().inner();
        let s = state.get_or_insert_with(|| Moments {
            step: 0,
            m: w.zeros_like(),
            v: w.zeros_like(),
        });
        s.step += 1;
        let bc1 = 1.0 - b1.powi(s.step);
        let bc2 = 1.0 - b2.powi(s.step);
        let step_size = opt.lr / bc1;
        s.m = s.m.clone() * b1 + g.clone() * (1.0 - b1);
        s.v = s.v.clone() * b2 + g.clone() * g * (1.0 - b2);
        let w = w * (1.0 - opt.lr * opt.weight_decay);
        let denom = s.v.clone().sqrt() / bc2.sqrt() + opt.eps;
        let w = w - s.m.clone() / denom * step_size;
        *p = Param::from_tensor(Tensor::from_inner(w).require_grad());
    }
    Ok(value)
}
