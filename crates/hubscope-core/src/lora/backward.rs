//! One example's loss backpropagated into the adapters, in one of two ways. Either every
//! decoder layer's activations are kept for one backward pass, or — gradient checkpointing, as
//! transformers' `gradient_checkpointing_enable()` runs it, per decoder layer — the forward
//! pass keeps only each layer's input, and the backward pass recomputes one layer at a time
//! and backpropagates through it alone: the gradient of the layer's output (from the layer
//! above, or from the loss) times its output, summed, is the scalar whose gradient gives this
//! layer's adapters and the gradient of its input. Activation memory is then one layer's
//! instead of all of them, for one more forward pass of compute.
//!
//! Either way the loss is taken a piece of positions at a time from the top layer's output,
//! each piece backpropagated to that output before the next one's logits exist: the head's
//! `[positions, vocab]` tensors are a piece's, not the whole example's.
//!
//! LoRA dropout draws its masks from the device's random stream; each layer reseeds it from
//! one draw per example, so the recomputed layer sees the masks of its first pass, and both
//! ways see the same masks.

use burn::tensor::{Distribution, Tensor};

use super::adapter::{put_adapters, take_adapters, untracked};
use super::train::{Example, next_token_loss};
use crate::cache::KvCache;
use crate::error::Result;
use crate::model::{Model, read_f32};

/// Keep every layer's activations, or only each layer's input (recomputing in the backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    Kept,
    Recomputed,
}

/// The gradients of the trainable tensors `params` (the adapters' `lora_A`/`lora_B`, as
/// tracked tensors), summed over the examples of a batch; None where no example reached one.
pub struct Grads(pub Vec<Option<Tensor<2>>>);

impl Grads {
    pub fn new(params: usize) -> Self {
        Grads(vec![None; params])
    }

    /// Add what one backward pass gave each of `params`.
    fn add(&mut self, params: &[Tensor<2>], grads: &burn::tensor::Gradients) {
        for (p, slot) in params.iter().zip(self.0.iter_mut()) {
            if let Some(g) = p.grad(grads) {
                *slot = Some(match slot.take() {
                    Some(sum) => sum + g,
                    None => g,
                });
            }
        }
    }
}

/// What the backward passes of one optimizer step share.
pub struct Pass<'a> {
    /// The trainable tensors, as tracked tensors (the adapters' `lora_A`/`lora_B`).
    pub params: &'a [Tensor<2>],
    pub how: Activations,
    /// Some adapter has dropout (its masks are then seeded per layer).
    pub dropout: bool,
}

/// Positions per piece of the loss: the head's logits, their log-softmax and gradients are
/// `[positions, vocab]` f32 each, 78 MB per piece for a 151,936-token vocabulary instead of
/// 1.2 GB for a 2,048-token example.
const LOSS_ROWS: usize = 128;

/// Backpropagate `scale` × the summed loss of `ex` into `grads`; returns the summed loss (not
/// scaled) and the number of labelled tokens.
pub async fn backward(
    model: &mut Model,
    pass: &Pass<'_>,
    ex: &Example,
    scale: f64,
    grads: &mut Grads,
) -> Result<(f32, usize)> {
    let (x, tables) = model.layer_input(&ex.ids)?;
    let seeds = LayerSeeds::draw(model, pass.dropout).await?;
    let params = pass.params;
    let outcome = match pass.how {
        Activations::Kept => {
            // Every layer's graph kept; the loss backpropagated to the top layer's output
            // first (piece by piece), then through all layers at once.
            let layers = &model.lm.model.layers;
            let mut x = x;
            for (l, layer) in layers.iter().enumerate() {
                seeds.before(model, l);
                x = layer.forward(x, &tables, &mut [&mut fresh_cache(model, l)]);
            }
            let (loss, count, top) =
                head_backward(model, pass, x.clone().detach(), ex, scale, grads);
            if let Some(dy) = top {
                grads.add(params, &(x * Tensor::from_inner(dy)).sum().backward());
            }
            (loss, count)
        }
        Activations::Recomputed => {
            // Forward: each layer's input kept, and no graph recorded (the adapters cut from
            // it for this pass, their dropout still on).
            let tracked = take_adapters(model);
            put_adapters(model, &untracked(&tracked));
            let mut inputs = Vec::with_capacity(model.lm.model.layers.len());
            let mut x = x.detach();
            for (l, layer) in model.lm.model.layers.iter().enumerate() {
                inputs.push(x.clone());
                seeds.before(model, l);
                x = layer.forward(x, &tables, &mut [&mut fresh_cache(model, l)]);
            }
            put_adapters(model, &tracked);
            let layers = &model.lm.model.layers;
            let (loss, count, mut upstream) = head_backward(model, pass, x, ex, scale, grads);
            // Backward: each layer recomputed from its input with the masks of its first
            // pass, then backpropagated alone.
            for (l, layer) in layers.iter().enumerate().rev() {
                let Some(dy) = upstream.take() else {
                    break; // nothing above depends on this layer's output
                };
                let x = inputs.pop().expect("one input per layer").require_grad();
                seeds.before(model, l);
                let y = layer.forward(x.clone(), &tables, &mut [&mut fresh_cache(model, l)]);
                let g = (y * Tensor::from_inner(dy)).sum().backward();
                grads.add(params, &g);
                if l > 0 {
                    upstream = x.grad(&g);
                }
            }
            (loss, count)
        }
    };
    seeds.after(model);
    let (loss, count) = outcome;
    Ok((read_f32(loss).await?[0], count))
}

/// The final norm, the head and the loss over the top layer's output `top: [1, n, hidden]`
/// (not tracked), `LOSS_ROWS` positions at a time, each piece backpropagated at once: the
/// summed loss (not scaled, not tracked), the labelled tokens, and the gradient of `scale` ×
/// the loss in `top` (None when no piece has a labelled token).
fn head_backward(
    model: &Model,
    pass: &Pass<'_>,
    top: Tensor<3>,
    ex: &Example,
    scale: f64,
    grads: &mut Grads,
) -> (Tensor<1>, usize, Option<Tensor<3>>) {
    let lm = &model.lm;
    let [b, n, d] = top.dims();
    // Position i is scored against label i + 1; the last position scores nothing.
    let targets = &ex.labels[1..];
    let mut pieces = Vec::with_capacity(n.div_ceil(LOSS_ROWS) + 1);
    let mut total: Option<Tensor<1>> = None;
    let mut count = 0;
    for start in (0..n - 1).step_by(LOSS_ROWS) {
        let end = (start + LOSS_ROWS).min(n - 1);
        let t = top.clone().slice([0..b, start..end, 0..d]).require_grad();
        let logits = lm.logits(lm.model.norm.forward(t.clone()));
        let (loss, c) = next_token_loss(model, logits, &targets[start..end]);
        count += c;
        let g = (loss.clone() * scale).backward();
        grads.add(pass.params, &g);
        let dy = t
            .grad(&g)
            .map(Tensor::from_inner)
            .unwrap_or_else(|| t.zeros_like().detach());
        pieces.push(dy);
        let loss = loss.detach();
        total = Some(match total {
            Some(sum) => sum + loss,
            None => loss,
        });
    }
    pieces.push(top.slice([0..b, n - 1..n, 0..d]).zeros_like());
    let total = total.expect("an example has at least two tokens");
    let upstream = (count > 0).then(|| Tensor::cat(pieces, 1).inner());
    (total, count, upstream)
}

/// An empty cache for layer `l` (with its sliding window, if it has one).
fn fresh_cache(model: &Model, l: usize) -> crate::cache::LayerCache {
    let KvCache { mut layers, .. } = model.new_cache();
    layers.swap_remove(l)
}

/// Per-layer seeds for the dropout masks of one example: one draw from the device's stream
/// when some adapter has dropout (none otherwise: no masks are drawn, nothing is read back).
struct LayerSeeds(Option<u64>);

impl LayerSeeds {
    async fn draw(model: &Model, dropout: bool) -> Result<Self> {
        if !dropout {
            return Ok(LayerSeeds(None));
        }
        let t: Tensor<1> = Tensor::random([2], Distribution::Uniform(0.0, 65536.0), &model.device);
        let v = read_f32(t).await?;
        let [a, b] = [v[0] as u64, v[1] as u64];
        Ok(LayerSeeds(Some((a << 16) ^ b ^ 0x5EED)))
    }

    fn before(&self, model: &Model, layer: usize) {
        if let Some(base) = self.0 {
            model.device.seed(mix(base, layer as u64 + 1));
        }
    }

    /// Leave the device's stream where the example's own draw left it, whichever way ran.
    fn after(&self, model: &Model) {
        if let Some(base) = self.0 {
            model.device.seed(mix(base, 0));
        }
    }
}

/// SplitMix64 of `base + k · golden ratio`.
fn mix(base: u64, k: u64) -> u64 {
    let mut z = base.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
