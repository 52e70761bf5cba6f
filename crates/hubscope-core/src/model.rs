//! One decoder for Qwen2/Qwen2.5, Qwen3 and Llama, switched by [`ModelConfig`].
//!
//! Fields are named as the checkpoint names them (`model.layers.0.self_attn.q_proj.weight`),
//! so the loader, the load report and `inspect` all read the same tree (see `structure`).
//! Linear weights keep the checkpoint layout `[out, in]`; `forward` multiplies by the
//! transposed view, which costs no copy.

use burn::module::{Module, Param};
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Device, Distribution, Int, Tensor, TensorData};

use crate::cache::{KvCache, LayerCache};
use crate::config::ModelConfig;
use crate::dtype::ComputeDtype;
use crate::error::{Error, Result};
use crate::layout::Proj;
use crate::report::LoadReport;
use crate::rope::{Rope, RopeTables};

/// `nn.Linear`: `y = x Wᵀ + b`, `weight: [out, in]`, with an optional LoRA adapter
/// (PEFT's `y += scale · (x Aᵀ) Bᵀ`).
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora: Option<Lora>,
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
}

impl Linear {
    /// `[.., in] -> [.., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let in_features = dims[D - 1];
        let rows: usize = dims[..D - 1].iter().product();
        // [rows, in] @ [in, out] -> [rows, out]
        let x = x.reshape([rows, in_features]);
        let mut y = x.clone().matmul(self.weight.val().t());
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze();
        }
        if let Some(l) = &self.lora {
            let a = l.lora_a.val();
            let x = if l.dropout > 0.0 && a.is_require_grad() {
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

/// `nn.Embedding`: `weight: [vocab, hidden]`.
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    /// `[batch, seq] -> [batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        embedding(self.weight.val(), ids)
    }
}

/// RMSNorm as transformers computes it: statistics in f32, scale in the compute dtype.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// `[.., hidden] -> [.., hidden]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = x.cast(DType::F32);
        let rms = (x.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        let normed = (x / rms).cast(dtype);
        normed * self.weight.val().unsqueeze()
    }
}

/// Grouped-query attention with RoPE; q/k/v bias (Qwen2) and q_norm/k_norm (Qwen3) by config.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub sliding_window: Option<usize>,
}

impl Attention {
    /// `x: [batch, seq, hidden]` at positions `start..start+seq` -> `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, cache: &mut LayerCache) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);

        // [b, s, heads, hd]
        let mut q = self.q_proj.forward(x.clone()).reshape([batch, seq, h, hd]);
        let mut k = self
            .k_proj
            .forward(x.clone())
            .reshape([batch, seq, kvh, hd]);
        let v = self.v_proj.forward(x).reshape([batch, seq, kvh, hd]);
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

        // [b, kvh, total, hd]
        let (k, v) = cache.append(k, v);
        let total = k.dims()[2];
        let window_mask = self.window_mask(seq, total, &q.device());

        let out = if seq == 1 && window_mask.is_none() {
            // Decode: fold each group's query heads into the query axis so the cache is
            // read once per kv head and never repeated. [b, kvh, groups, hd]
            // Written out as two matmuls so the strided cache views are read in place
            // (a fused attention op would first copy the whole cache prefix, every token).
            let q = q.reshape([batch, kvh, h / kvh, hd]);
            let dtype = q.dtype();
            // [b, kvh, groups, total]
            let scores = q.matmul(k.swap_dims(2, 3)).cast(DType::F32) * (1.0 / (hd as f64).sqrt());
            let probs = softmax(scores, 3).cast(dtype);
            probs.matmul(v).reshape([batch, h, 1, hd])
        } else {
            let (k, v) = (repeat_kv(k, h / kvh), repeat_kv(v, h / kvh));
            let options = AttentionModuleOptions {
                is_causal: window_mask.is_none(),
                ..Default::default()
            };
            attention(q, k, v, window_mask, None, options)
        };
        // [b, h, s, hd] -> [b, s, h*hd]
        let out = out.swap_dims(1, 2).reshape([batch, seq, h * hd]);
        self.o_proj.forward(out)
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

/// SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    /// `[b, s, hidden] -> [b, s, hidden]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// The layer's linear projections, in [`Proj::ALL`] order.
    pub fn projections_mut(&mut self) -> [(Proj, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            (Proj::Q, &mut a.q_proj),
            (Proj::K, &mut a.k_proj),
            (Proj::V, &mut a.v_proj),
            (Proj::O, &mut a.o_proj),
            (Proj::Gate, &mut m.gate_proj),
            (Proj::Up, &mut m.up_proj),
            (Proj::Down, &mut m.down_proj),
        ]
    }

    /// `[b, s, hidden] -> [b, s, hidden]` (pre-norm residual block)
    pub fn forward(&self, x: Tensor<3>, rope: &RopeTables, cache: &mut LayerCache) -> Tensor<3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), rope, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// `model.*`: embeddings, decoder layers, final norm.
#[derive(Module, Debug)]
pub struct DecoderModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// The causal language model: `model` + `lm_head` (None when tied to `embed_tokens`).
#[derive(Module, Debug)]
pub struct CausalLm {
    pub model: DecoderModel,
    pub lm_head: Option<Linear>,
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
        mut trace: Option<&mut Trace>,
    ) -> Tensor<3> {
        let start = cache.len();
        let seq = ids.dims()[1];
        // [b, s, hidden]
        let mut x = self.model.embed_tokens.forward(ids);
        let tables = rope.tables(start, seq, x.dtype(), &x.device());
        if let Some(t) = trace.as_deref_mut() {
            t.layer_outputs.push(x.clone());
        }
        for (layer, c) in self.model.layers.iter().zip(cache.layers.iter_mut()) {
            x = layer.forward(x, &tables, c);
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
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, d] = hidden.dims();
                let w = self.model.embed_tokens.weight.val();
                let vocab = w.dims()[0];
                hidden
                    .reshape([b * s, d])
                    .matmul(w.t())
                    .reshape([b, s, vocab])
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
