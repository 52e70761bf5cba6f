//! One decoder for every family hubscope runs (Qwen2/2.5, Qwen3, Llama, Mistral, Gemma 2,
//! Gemma 3, Phi-3, Qwen2-MoE, Qwen3-MoE), switched by [`ModelConfig`]: optional modules and
//! flags, never a copy of the decoder per family.
//!
//! Fields are named as the checkpoint names them (`model.layers.0.self_attn.q_proj.weight`),
//! so the loader, the load report and `inspect` all read the same tree (see `structure`).
//! Linear weights keep the checkpoint layout `[out, in]`; `forward` multiplies by the
//! transposed view, which costs no copy.

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, sigmoid, softmax};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::{AttentionModuleOptions, IndexingUpdateOp};
use burn::tensor::{Bool, DType, Device, Distribution, Int, Tensor, TensorData};

use crate::cache::{KvCache, LayerCache};
use crate::config::{Activation, ModelConfig};
use crate::dtype::ComputeDtype;
use crate::error::{Error, Result};
use crate::report::LoadReport;
use crate::rope::{Rope, RopeSet, RopeTables};

/// `nn.Linear`: `y = x Wᵀ + b`, `weight: [out, in]`, with an optional LoRA adapter
/// (PEFT's `y += scale · (x Aᵀ) Bᵀ`). A weight loaded from a GGUF file for generation on the
/// CPU may stay in its ggml blocks (`blocks`); `weight` is then a placeholder of the right
/// shape holding no values (a broadcast zero), and every product reads the blocks.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<Lora>,
    #[module(skip)]
    pub blocks: Option<crate::cpu::Blocks>,
}

/// A LoRA adapter on one linear layer, named as PEFT names it: `lora_A: [r, in]`,
/// `lora_B: [out, r]`, scaled by `alpha / r` (or `alpha / sqrt(r)` with rsLoRA). Dropout
/// (PEFT's `lora_dropout`, on the adapter's input) applies only while the adapter trains.
#[derive(Module, Debug)]
pub struct Lora {
    pub lora_a: Param<Tensor<2>>,
    pub lora_b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: f64,
    /// Being trained: dropout applies (set by `make_trainable`, cleared by `freeze`).
    pub training: bool,
}

impl Linear {
    /// `[.., in] -> [.., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let in_features = dims[D - 1];
        let rows: usize = dims[..D - 1].iter().product();
        // [rows, in] @ [in, out] -> [rows, out]
        let x = x.reshape([rows, in_features]);
        let mut y = match &self.blocks {
            Some(b) => crate::cpu::matmul_blocks(x.clone(), b),
            None => crate::cpu::matmul_t(x.clone(), self.weight.val()),
        };
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze();
        }
        if let Some(l) = &self.lora {
            let a = l.lora_a.val();
            let x = if l.dropout > 0.0 && l.training {
                // inverted dropout, as torch.nn.Dropout in training mode
                let keep = 1.0 - l.dropout;
                let mask = x.random_like(Distribution::Bernoulli(keep));
                x * mask / keep
            } else {
                x
            };
            // [rows, in] @ [in, r] @ [r, out]
            y = y + x.matmul(a.t()).matmul(l.lora_b.val().t()) * l.scale;
        }
        let mut out = dims;
        out[D - 1] = y.dims()[1];
        y.reshape(out)
    }
}

/// `nn.Embedding`: `weight: [vocab, hidden]`. Like [`Linear`]'s, a GGUF file's table may stay
/// in its ggml blocks for generation on the CPU (`weight` a placeholder then); a lookup
/// decodes the rows it needs.
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
    #[module(skip)]
    pub blocks: Option<crate::cpu::Blocks>,
}

impl Embedding {
    /// `[batch, seq] -> [batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        match &self.blocks {
            Some(b) => {
                let [batch, seq] = ids.dims();
                let device = ids.device();
                // Blocks live only on the CPU device, where reading the ids back is immediate.
                let ids: Vec<i64> = ids.into_data().iter::<i64>().collect();
                let rows = b.rows_f32(&ids);
                Tensor::from_data(
                    burn::tensor::TensorData::new(rows, [batch, seq, b.cols]),
                    (&device, burn::tensor::DType::F32),
                )
            }
            None => embedding(self.weight.val(), ids),
        }
    }
}

/// RMSNorm as transformers computes it: statistics in f32, scale in the compute dtype; or
/// Gemma's, which scales by `1 + weight` in f32 and casts after.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
    pub unit_offset: bool,
}

impl RmsNorm {
    /// `[.., hidden] -> [.., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        if self.unit_offset {
            let w = self.weight.val().cast(DType::F32) + 1.0;
            return ((x / rms) * w.unsqueeze()).cast(dtype);
        }
        let normed = (x / rms).cast(dtype);
        normed * self.weight.val().unsqueeze()
    }
}

/// `cap · tanh(x / cap)` (Gemma 2's soft-capping).
fn soft_cap<const D: usize>(x: Tensor<D>, cap: Option<f64>) -> Tensor<D> {
    match cap {
        Some(c) => (x / c).tanh() * c,
        None => x,
    }
}

/// Grouped-query attention with RoPE. By config: q/k/v bias (Qwen2), q_norm/k_norm (Qwen3,
/// Gemma 3), one fused `qkv_proj` (Phi-3), Gemma's scale and score soft-capping, a sliding
/// window, and the local rotary base (Gemma 3's sliding layers).
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Option<Linear>,
    pub k_proj: Option<Linear>,
    pub v_proj: Option<Linear>,
    pub qkv_proj: Option<Linear>,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub sliding_window: Option<usize>,
    pub scale: f64,
    pub softcap: Option<f64>,
    pub local_rope: bool,
}

impl Attention {
    /// q, k, v as `[b, s, width]` each, from separate projections or Phi-3's fused one.
    fn qkv(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        if let Some(qkv) = &self.qkv_proj {
            let [b, s, _] = x.dims();
            let (qd, kd) = (
                self.num_heads * self.head_dim,
                self.num_kv_heads * self.head_dim,
            );
            let t = qkv.forward(x);
            return (
                t.clone().slice([0..b, 0..s, 0..qd]),
                t.clone().slice([0..b, 0..s, qd..qd + kd]),
                t.slice([0..b, 0..s, qd + kd..qd + 2 * kd]),
            );
        }
        let proj = |l: &Option<Linear>, x: Tensor<3>| match l {
            Some(l) => l.forward(x),
            None => unreachable!("the loader builds q/k/v or qkv"),
        };
        (
            proj(&self.q_proj, x.clone()),
            proj(&self.k_proj, x.clone()),
            proj(&self.v_proj, x),
        )
    }

    /// `x: [batch, seq, hidden] -> [batch, seq, hidden]`. One cache: every row continues it
    /// (positions `cache.len()..`). One cache per row (continuous batching, `seq` = 1): row
    /// `i` continues `caches[i]` at its own position, given by `rope`'s row `i`; only the
    /// attention over each cache runs per row, the projections run once for all rows.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeSet,
        caches: &mut [&mut LayerCache],
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rope: &RopeTables = rope.for_layer(self.local_rope);

        // [b, s, heads, hd]
        let (q, k, v) = self.qkv(x);
        let mut q = q.reshape([batch, seq, h, hd]);
        let mut k = k.reshape([batch, seq, kvh, hd]);
        let v = v.reshape([batch, seq, kvh, hd]);
        if let Some(n) = &self.q_norm {
            q = n.forward(q);
        }
        if let Some(n) = &self.k_norm {
            k = n.forward(k);
        }
        // [b, heads, s, hd]
        let q = rope.apply(q.swap_dims(1, 2));
        let k = rope.apply(k.swap_dims(1, 2));
        let v = v.swap_dims(1, 2);

        // Each row's keys and values join its cache: [b, kvh, total, hd] views of all it holds.
        let held: Vec<(Tensor<4>, Tensor<4>)> = match caches {
            [cache] => vec![cache.append(k, v)],
            rows => {
                let row = |t: &Tensor<4>, i: usize| {
                    let [_, a, b, c] = t.dims();
                    t.clone().slice([i..i + 1, 0..a, 0..b, 0..c])
                };
                rows.iter_mut()
                    .enumerate()
                    .map(|(i, cache)| cache.append(row(&k, i), row(&v, i)))
                    .collect()
            }
        };
        let unmasked =
            |(k, _): &(Tensor<4>, Tensor<4>)| self.sliding_window.is_none_or(|w| k.dims()[2] <= w);
        let on_cpu = if seq == 1 && held.iter().all(unmasked) {
            let heads = crate::cpu::Heads {
                heads: h,
                kv_heads: kvh,
                head_dim: hd,
                scale: self.scale as f32,
                softcap: self.softcap.map(|c| c as f32),
            };
            crate::cpu::decode_attention(&q, &held, heads)
        } else {
            None
        };
        let out = match (on_cpu, held.len()) {
            (Some(out), _) => out,
            (None, 1) => {
                let (k, v) = held.into_iter().next().expect("one row");
                self.attend(q, k, v)
            }
            (None, _) => {
                let outs = held
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        let [_, a, b, c] = q.dims();
                        self.attend(q.clone().slice([i..i + 1, 0..a, 0..b, 0..c]), k, v)
                    })
                    .collect();
                Tensor::cat(outs, 0)
            }
        };
        // [b, h, s, hd] -> [b, s, h*hd]
        let out = out.swap_dims(1, 2).reshape([batch, seq, h * hd]);
        self.o_proj.forward(out)
    }

    /// Attention of `q: [b, heads, s, hd]` (rotated, the last `s` positions) over all a cache
    /// holds, `k, v: [b, kvh, total, hd]`. -> `[b, heads, s, hd]`
    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [batch, h, seq, hd] = q.dims();
        let kvh = self.num_kv_heads;
        let total = k.dims()[2];
        let window_mask = self.window_mask(seq, total, &q.device());

        if seq == 1 && window_mask.is_none() {
            // Decode: fold each group's query heads into the query axis so the cache is
            // read once per kv head and never repeated. [b, kvh, groups, hd]
            // Written out as two matmuls so the strided cache views are read in place
            // (a fused attention op would first copy the whole cache prefix, every token).
            let q = q.reshape([batch, kvh, h / kvh, hd]);
            let dtype = q.dtype();
            // [b, kvh, groups, total]
            let scores = q.matmul(k.swap_dims(2, 3)).cast(DType::F32) * self.scale;
            let probs = softmax(soft_cap(scores, self.softcap), 3).cast(dtype);
            probs.matmul(v).reshape([batch, h, 1, hd])
        } else {
            let (k, v) = (repeat_kv(k, h / kvh), repeat_kv(v, h / kvh));
            let options = AttentionModuleOptions {
                is_causal: window_mask.is_none(),
                scale: Some(self.scale),
                softcap: self.softcap,
            };
            attention(q, k, v, window_mask, None, options)
        }
    }

    /// Causal mask that also hides keys older than the sliding window; None when the plain
    /// causal mask suffices.
    fn window_mask(&self, seq: usize, total: usize, device: &Device) -> Option<Tensor<4, Bool>> {
        let window = self.sliding_window?;
        if total <= window {
            return None;
        }
        let offset = total - seq;
        let mut masked = Vec::with_capacity(seq * total);
        for i in 0..seq {
            let pos = offset + i;
            masked.extend((0..total).map(|j| j > pos || pos - j >= window));
        }
        Some(Tensor::from_data(
            TensorData::new(masked, [1, 1, seq, total]),
            device,
        ))
    }
}

/// `[b, kvh, s, hd] -> [b, kvh*n, s, hd]`, each kv head repeated for its query group.
fn repeat_kv(x: Tensor<4>, n: usize) -> Tensor<4> {
    if n == 1 {
        return x;
    }
    let [b, kvh, s, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, n, s, hd])
        .reshape([b, kvh * n, s, hd])
}

/// Gated MLP: `down(act(gate(x)) * up(x))` with SiLU (SwiGLU) or tanh-GELU (GeGLU); Phi-3
/// computes gate and up in one `gate_up_proj`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Option<Linear>,
    pub up_proj: Option<Linear>,
    pub gate_up_proj: Option<Linear>,
    pub down_proj: Linear,
    pub gelu: bool,
}

impl Mlp {
    pub fn new(
        (gate_proj, up_proj): (Option<Linear>, Option<Linear>),
        gate_up_proj: Option<Linear>,
        down_proj: Linear,
        act: Activation,
    ) -> Self {
        Mlp {
            gate_proj,
            up_proj,
            gate_up_proj,
            down_proj,
            gelu: act == Activation::GeluTanh,
        }
    }

    /// `[.., hidden] -> [.., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let (gate, up) = match (&self.gate_up_proj, &self.gate_proj, &self.up_proj) {
            (Some(gu), _, _) => {
                let t = gu.forward(x);
                let width = t.dims()[D - 1] / 2;
                let g = t.clone().narrow(D - 1, 0, width);
                (g, t.narrow(D - 1, width, width))
            }
            (None, Some(g), Some(u)) => (g.forward(x.clone()), u.forward(x)),
            _ => unreachable!("the loader builds gate/up or gate_up"),
        };
        let act = if self.gelu {
            Activation::GeluTanh
        } else {
            Activation::Silu
        };
        self.down_proj.forward(crate::cpu::gated(gate, up, act))
    }
}

/// A sparse mixture of experts (Qwen2-MoE, Qwen3-MoE): a router `gate` picks the top-k of
/// `experts` per token (softmax in f32, optionally renormalised); Qwen2-MoE adds an always-on
/// `shared_expert` scaled by `sigmoid(shared_expert_gate(x))`.
#[derive(Module, Debug)]
pub struct SparseMoe {
    pub gate: Linear,
    pub experts: Vec<Mlp>,
    pub shared_expert: Option<Mlp>,
    pub shared_expert_gate: Option<Linear>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

impl SparseMoe {
    /// `[b, s, hidden] -> [b, s, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let x = x.reshape([b * s, d]);
        let dtype = x.dtype();
        // [tokens, experts] -> top-k weights and expert ids, [tokens, k]
        let probs = softmax(self.gate.forward(x.clone()).cast(DType::F32), 1);
        let (mut weights, ids) = probs.topk_with_indices(self.top_k, 1);
        if self.norm_topk_prob {
            weights = weights.clone() / weights.sum_dim(1);
        }
        let weights = weights.cast(dtype);
        let mut out = self.routed(x.clone(), weights, ids);
        if let (Some(shared), Some(gate)) = (&self.shared_expert, &self.shared_expert_gate) {
            out = out + shared.forward(x.clone()) * sigmoid(gate.forward(x));
        }
        out.reshape([b, s, d])
    }

    /// Each token through its chosen experts, weighted. Native: the routing is read back
    /// and only the chosen experts run, on the tokens that chose them.
    #[cfg(not(target_arch = "wasm32"))]
    fn routed(&self, x: Tensor<2>, weights: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<2> {
        let (Ok(w), Ok(i)) = (
            weights.clone().cast(DType::F32).try_into_data(),
            ids.clone().try_into_data(),
        ) else {
            return self.routed_dense(x, weights, ids);
        };
        let (Ok(w), Ok(i)) = (
            w.try_to_vec::<f32>(),
            i.convert::<i64>().try_to_vec::<i64>(),
        ) else {
            return self.routed_dense(x, weights, ids);
        };
        let device = x.device();
        let mut rows: Vec<(Vec<i64>, Vec<f32>)> = vec![(vec![], vec![]); self.experts.len()];
        for (slot, (&e, &wt)) in i.iter().zip(&w).enumerate() {
            let token = (slot / self.top_k) as i64;
            if let Some(r) = rows.get_mut(e as usize) {
                r.0.push(token);
                r.1.push(wt);
            }
        }
        let mut out = x.zeros_like();
        for (expert, (tokens, wts)) in self.experts.iter().zip(rows) {
            if tokens.is_empty() {
                continue;
            }
            let n = tokens.len();
            let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(tokens, [n]), &device);
            let wt: Tensor<2> =
                Tensor::from_data(TensorData::new(wts, [n, 1]), (&device, DType::F32));
            let y = expert.forward(x.clone().select(0, idx.clone())) * wt.cast(x.dtype());
            out = out.select_assign(0, idx, y, IndexingUpdateOp::Add);
        }
        out
    }

    #[cfg(target_arch = "wasm32")]
    fn routed(&self, x: Tensor<2>, weights: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<2> {
        self.routed_dense(x, weights, ids)
    }

    /// Device-only routing (no read-back, as the browser's GPU needs): every expert runs on
    /// every token, weighted by the token's routing weight for it (zero when not chosen).
    fn routed_dense(&self, x: Tensor<2>, weights: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<2> {
        let [t, _] = x.dims();
        let full: Tensor<2> = Tensor::zeros([t, self.experts.len()], (&x.device(), x.dtype()))
            .scatter(1, ids, weights, IndexingUpdateOp::Add);
        let mut out = x.zeros_like();
        for (e, expert) in self.experts.iter().enumerate() {
            let w = full.clone().narrow(1, e, 1);
            out = out + expert.forward(x.clone()) * w;
        }
        out
    }
}

/// A layer's feed-forward: a dense MLP or a mixture of experts. Both are `mlp` in the
/// checkpoint; the variant name is not part of any tensor name.
#[derive(Module, Debug)]
pub enum FeedForward {
    Dense(Mlp),
    Sparse(SparseMoe),
}

impl FeedForward {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            FeedForward::Dense(m) => m.forward(x),
            FeedForward::Sparse(m) => m.forward(x),
        }
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: FeedForward,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    /// Gemma: norms around the feed-forward; `post_attention_layernorm` then normalises the
    /// attention output instead of the feed-forward input.
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    pub post_feedforward_layernorm: Option<RmsNorm>,
}

impl DecoderLayer {
    /// Every linear layer with its path below the layer (`self_attn.q_proj`,
    /// `mlp.experts.3.down_proj`), in module order, as `layout::layer_linears` lists them.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out: Vec<(String, &mut Linear)> = vec![];
        let a = &mut self.self_attn;
        for (name, l) in [
            ("q_proj", a.q_proj.as_mut()),
            ("k_proj", a.k_proj.as_mut()),
            ("v_proj", a.v_proj.as_mut()),
            ("qkv_proj", a.qkv_proj.as_mut()),
            ("o_proj", Some(&mut a.o_proj)),
        ] {
            if let Some(l) = l {
                out.push((format!("self_attn.{name}"), l));
            }
        }
        fn mlp<'a>(prefix: String, m: &'a mut Mlp, out: &mut Vec<(String, &'a mut Linear)>) {
            for (name, l) in [
                ("gate_proj", m.gate_proj.as_mut()),
                ("up_proj", m.up_proj.as_mut()),
                ("gate_up_proj", m.gate_up_proj.as_mut()),
                ("down_proj", Some(&mut m.down_proj)),
            ] {
                if let Some(l) = l {
                    out.push((format!("{prefix}.{name}"), l));
                }
            }
        }
        match &mut self.mlp {
            FeedForward::Dense(m) => mlp("mlp".into(), m, &mut out),
            FeedForward::Sparse(moe) => {
                out.push(("mlp.gate".into(), &mut moe.gate));
                for (e, m) in moe.experts.iter_mut().enumerate() {
                    mlp(format!("mlp.experts.{e}"), m, &mut out);
                }
                if let Some(m) = moe.shared_expert.as_mut() {
                    mlp("mlp.shared_expert".into(), m, &mut out);
                }
                if let Some(g) = moe.shared_expert_gate.as_mut() {
                    out.push(("mlp.shared_expert_gate".into(), g));
                }
            }
        }
        out
    }

    /// `[b, s, hidden] -> [b, s, hidden]` (pre-norm residual block); `caches` as for
    /// [`Attention::forward`].
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeSet,
        caches: &mut [&mut LayerCache],
    ) -> Tensor<3> {
        let attn = self
            .self_attn
            .forward(self.input_layernorm.forward(x.clone()), rope, caches);
        match (
            &self.pre_feedforward_layernorm,
            &self.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => {
                let h = x + self.post_attention_layernorm.forward(attn);
                h.clone() + post.forward(self.mlp.forward(pre.forward(h)))
            }
            _ => {
                let h = x + attn;
                h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
            }
        }
    }
}

/// `model.*`: embeddings (times `embed_scale` for Gemma, already rounded to the compute dtype
/// as transformers rounds it: sqrt(3072) is 55.5 in bf16), decoder layers, final norm.
#[derive(Module, Debug)]
pub struct DecoderModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub embed_scale: Option<f64>,
}

/// The causal language model: `model` + `lm_head` (None when tied to `embed_tokens`), and
/// Gemma 2's final logit soft-capping.
#[derive(Module, Debug)]
pub struct CausalLm {
    pub model: DecoderModel,
    pub lm_head: Option<Linear>,
    pub final_logit_softcapping: Option<f64>,
}

/// What a forward pass returns besides logits, for checking against transformers.
#[derive(Default)]
pub struct Trace {
    /// Residual stream after the embedding and after every layer, `[b, s, hidden]` each.
    pub layer_outputs: Vec<Tensor<3>>,
    /// Output of the final norm, `[b, s, hidden]`.
    pub final_norm: Option<Tensor<3>>,
}

impl CausalLm {
    /// Hidden states after the final norm. `ids: [b, s]` at positions `cache.len()..`.
    pub fn hidden(
        &self,
        ids: Tensor<2, Int>,
        rope: &Rope,
        cache: &mut KvCache,
        trace: Option<&mut Trace>,
    ) -> Tensor<3> {
        let start = cache.len();
        let seq = ids.dims()[1];
        let x = self.embed(ids);
        let tables = rope.tables(start, seq, x.dtype(), &x.device());
        self.layers(x, &tables, &mut [cache], trace)
    }

    /// Hidden states after the final norm for a batch of sequences that each take one more
    /// token: `ids: [rows, 1]`, row `i` continuing `caches[i]` (continuous batching).
    pub fn hidden_rows(
        &self,
        ids: Tensor<2, Int>,
        rope: &Rope,
        caches: &mut [&mut KvCache],
    ) -> Tensor<3> {
        let x = self.embed(ids);
        let positions: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let tables = rope.rows(&positions, x.dtype(), &x.device());
        self.layers(x, &tables, caches, None)
    }

    /// `[b, s] -> [b, s, hidden]`, times Gemma's `embed_scale`; in the compute dtype (that of
    /// the norms: a table kept in 16 bits by `--dtype stored` is widened here).
    pub(crate) fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let x = self
            .model
            .embed_tokens
            .forward(ids)
            .cast(self.model.norm.weight.val().dtype());
        match self.model.embed_scale {
            Some(scale) => x * scale,
            None => x,
        }
    }

    /// The decoder layers and the final norm; `caches`: one for all rows, or one per row.
    fn layers(
        &self,
        mut x: Tensor<3>,
        tables: &RopeSet,
        caches: &mut [&mut KvCache],
        mut trace: Option<&mut Trace>,
    ) -> Tensor<3> {
        if let Some(t) = trace.as_deref_mut() {
            t.layer_outputs.push(x.clone());
        }
        for (l, layer) in self.model.layers.iter().enumerate() {
            let mut layer_caches: Vec<&mut LayerCache> =
                caches.iter_mut().map(|c| &mut c.layers[l]).collect();
            x = layer.forward(x, tables, &mut layer_caches);
            if let Some(t) = trace.as_deref_mut() {
                t.layer_outputs.push(x.clone());
            }
        }
        let x = self.model.norm.forward(x);
        if let Some(t) = trace {
            t.final_norm = Some(x.clone());
        }
        x
    }

    /// `[b, s, hidden] -> [b, s, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        soft_cap(self.head(hidden), self.final_logit_softcapping)
    }

    fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, d] = hidden.dims();
                let x = hidden.reshape([b * s, d]);
                let e = &self.model.embed_tokens;
                let y = match &e.blocks {
                    Some(blocks) => crate::cpu::matmul_blocks(x, blocks),
                    None => crate::cpu::matmul_t(x, e.weight.val()),
                };
                let vocab = y.dims()[1];
                y.reshape([b, s, vocab])
            }
        }
    }

    /// Logits of the last position only: `[b, s] -> [b, vocab]`. Advances the cache by `s`.
    pub fn forward_last(&self, ids: Tensor<2, Int>, rope: &Rope, cache: &mut KvCache) -> Tensor<2> {
        let h = self.hidden(ids, rope, cache, None);
        let [b, s, d] = h.dims();
        let last = h.slice([0..b, s - 1..s, 0..d]);
        self.logits(last).squeeze_dim::<2>(1)
    }
}

/// Log-softmax over the vocabulary, in f32. `[b, vocab] -> [b, vocab]`
pub fn log_probs(logits: Tensor<2>) -> Tensor<2> {
    log_softmax(logits.cast(DType::F32), 1)
}

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
    pub(crate) fn assemble(
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

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            &self.config.layer_windows,
            self.config.max_position_embeddings,
        )
    }

    /// `ids` as a `shape` tensor (`[1, n]`: one sequence; `[n, 1]`: one token per sequence).
    fn ids_tensor(&self, ids: &[u32], shape: [usize; 2]) -> Tensor<2, Int> {
        let data: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(data, shape), &self.device)
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
        let ids = self.ids_tensor(ids, [1, ids.len()]);
        Ok(crate::cpu::on_pool(|| {
            self.lm.forward_last(ids, &self.rope, cache)
        }))
    }

    /// One more token for each of several sequences at once (continuous batching): `ids[i]`
    /// continues `caches[i]`; logits `[rows, vocab]`. Equal, row by row, to [`Model::step`]
    /// on each sequence alone.
    pub fn step_rows(&self, ids: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor<2>> {
        if ids.is_empty() || ids.len() != caches.len() {
            return Err(Error::Invalid(format!(
                "{} ids for {} sequences: one id per sequence",
                ids.len(),
                caches.len()
            )));
        }
        self.check_ids(ids)?;
        for c in caches.iter() {
            self.check_room(c, 1)?;
        }
        let ids = self.ids_tensor(ids, [ids.len(), 1]);
        Ok(crate::cpu::on_pool(|| {
            let h = self.lm.hidden_rows(ids, &self.rope, caches);
            self.lm.logits(h).squeeze_dim::<2>(1)
        }))
    }

    /// What the decoder layers take for the prompt `ids` from position 0, checked as every
    /// forward pass checks it: the embedded tokens `[1, s, hidden]` and the rotary tables.
    /// Training runs the layers itself from here.
    pub(crate) fn layer_input(&self, ids: &[u32]) -> Result<(Tensor<3>, RopeSet)> {
        if ids.is_empty() {
            return Err(Error::Invalid("empty prompt: nothing to run".into()));
        }
        self.check_ids(ids)?;
        self.check_room(&self.new_cache(), ids.len())?;
        let x = self.lm.embed(self.ids_tensor(ids, [1, ids.len()]));
        let tables = self.rope.tables(0, ids.len(), x.dtype(), &x.device());
        Ok((x, tables))
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
            self.ids_tensor(ids, [1, ids.len()]),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(out: usize, inp: usize, device: &Device) -> Linear {
        Linear {
            weight: Param::from_tensor(Tensor::random(
                [out, inp],
                Distribution::Normal(0.0, 0.3),
                device,
            )),
            bias: None,
            lora: None,
            blocks: None,
        }
    }

    /// The browser's device-only routing (every expert on every token, zero weight where not
    /// chosen) equals the native routing that runs only the chosen experts.
    #[test]
    fn dense_routing_equals_sparse_routing() {
        let device = Device::flex();
        let (h, w, e) = (16, 8, 6);
        let expert = || {
            Mlp::new(
                (Some(linear(w, h, &device)), Some(linear(w, h, &device))),
                None,
                linear(h, w, &device),
                Activation::Silu,
            )
        };
        for norm_topk_prob in [false, true] {
            let moe = SparseMoe {
                gate: linear(e, h, &device),
                experts: (0..e).map(|_| expert()).collect(),
                shared_expert: None,
                shared_expert_gate: None,
                top_k: 2,
                norm_topk_prob,
            };
            let x: Tensor<2> = Tensor::random([7, h], Distribution::Normal(0.0, 1.0), &device);
            let probs = softmax(moe.gate.forward(x.clone()), 1);
            let (mut wts, ids) = probs.topk_with_indices(2, 1);
            if norm_topk_prob {
                wts = wts.clone() / wts.sum_dim(1);
            }
            let sparse = moe.routed(x.clone(), wts.clone(), ids.clone());
            let dense = moe.routed_dense(x, wts, ids);
            let d: f32 = (sparse - dense).abs().max().into_scalar();
            assert!(d < 1e-5, "routings differ by {d}");
        }
    }
}
