//! Loading: the checkpoint's tensors matched to the module tree by name (the load report,
//! from headers alone), read and converted to the compute dtype, built into the burn modules;
//! and the [`Model`] constructors (safetensors, burnpack, random weights), with linear weights
//! quantized to ggml blocks on the way where `--dtype q8_0|q4_0|q4_k` asks.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::cpu::Blocks;
use crate::dtype::{ComputeDtype, WeightDtype};
use crate::error::{Error, Result};
use crate::feed::Feed;
use crate::layout::layer_linears;
use crate::model::{
    Attention, CausalLm, DecoderLayer, DecoderModel, Embedding, FeedForward, Linear, Mlp, Model,
    RmsNorm, SparseMoe,
};
use crate::quantize::{Quant, quantize_matrix};
use crate::report::{LoadEntry, LoadReport, LoadStatus, StoredType};
use crate::safetensors::{FileHeader, StoredDtype, convert};
use crate::structure::{ParamSpec, model_tree};

/// Buffers that checkpoints sometimes carry and transformers ignores.
fn is_ignored_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// A checkpoint tensor as the matching needs it: where it is, its shape, how it is stored.
pub struct Found {
    pub file: String,
    pub shape: Vec<usize>,
    pub stored: StoredType,
}

/// Match the checkpoint's tensors (from headers alone) to the module tree: the load report.
/// Missing, unused or wrongly shaped tensors and unloadable dtypes are errors naming the tensor.
pub fn plan_load(config: &ModelConfig, headers: &[FileHeader]) -> Result<LoadReport> {
    let mut found = HashMap::new();
    for h in headers {
        for (name, t) in &h.tensors {
            StoredDtype::of(&t.file, name, t.dtype)?;
            found.insert(
                name.clone(),
                Found {
                    file: t.file.clone(),
                    shape: t.shape.clone(),
                    stored: StoredType::Safetensors(t.dtype),
                },
            );
        }
    }
    match_tree(config, found)
}

/// The load report from checkpoint tensors named as transformers names them (safetensors, or
/// GGUF's mapped back), their stored types already known to be readable.
pub fn match_tree(config: &ModelConfig, mut tensors: HashMap<String, Found>) -> Result<LoadReport> {
    let tree = model_tree(config);
    let module_of = |path: &str| path.rsplit_once('.').map_or("", |(m, _)| m).to_string();
    let mut report = LoadReport::default();
    for spec in tree.all_params() {
        let found = tensors.remove(spec.path.as_str());
        if let Some(target) = &spec.tied_to {
            // A tied head saved anyway is ignored: transformers ties it to the embedding.
            report.entries.push(LoadEntry {
                tensor: spec.path.clone(),
                file: found.as_ref().map(|t| t.file.clone()).unwrap_or_default(),
                module: module_of(&spec.path),
                shape: spec.shape.clone(),
                stored_dtype: found.as_ref().map(|t| t.stored),
                status: if found.is_some() {
                    LoadStatus::TiedIgnored { to: target.clone() }
                } else {
                    LoadStatus::Tied { to: target.clone() }
                },
            });
            continue;
        }
        let t = found.ok_or_else(|| Error::MissingTensor {
            name: spec.path.clone(),
            module: module_of(&spec.path),
            expected: spec.shape.clone(),
        })?;
        check_shape(&t.file, spec, &t.shape)?;
        report.entries.push(LoadEntry {
            tensor: spec.path.clone(),
            file: t.file,
            module: module_of(&spec.path),
            shape: spec.shape.clone(),
            stored_dtype: Some(t.stored),
            status: LoadStatus::Loaded,
        });
    }
    let mut rest: Vec<_> = tensors.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in rest {
        if !is_ignored_buffer(&name) {
            return Err(Error::UnusedTensor {
                file: t.file,
                name,
                shape: t.shape,
                arch: tree.class,
            });
        }
        report.entries.push(LoadEntry {
            tensor: name,
            file: t.file,
            module: String::new(),
            shape: t.shape,
            stored_dtype: Some(t.stored),
            status: LoadStatus::IgnoredBuffer,
        });
    }
    Ok(report)
}
fn check_shape(file: &str, spec: &ParamSpec, found: &[usize]) -> Result<()> {
    if spec.shape != found {
        return Err(Error::ShapeMismatch {
            file: file.to_string(),
            name: spec.path.clone(),
            expected: spec.shape.clone(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Random weights for the tree (norm weights near 1, others N(0, 0.02)), for benchmarks
/// of a model shape without downloading it.
pub fn random_weights(
    config: &ModelConfig,
    dtype: ComputeDtype,
    seed: u64,
) -> HashMap<String, TensorData> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        // xorshift64* -> uniform in [-1, 1); a sum of two gives a cheap bell shape.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut out = HashMap::new();
    for spec in model_tree(config).all_params() {
        if spec.tied_to.is_some() {
            continue;
        }
        let is_norm = spec.path.ends_with("norm.weight");
        // Gemma's norms scale by 1 + weight: centre them on 0.
        let centre = if config.gemma_norms { 0.0 } else { 1.0 };
        let vals: Vec<f32> = (0..spec.numel())
            .map(|_| {
                let x = (next() + next()) * 0.5;
                if is_norm { centre + 0.1 * x } else { 0.035 * x }
            })
            .collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.insert(
            spec.path.clone(),
            convert(&bytes, StoredDtype::F32, dtype, spec.shape.clone()),
        );
    }
    out
}

/// A checkpoint tensor already on its device (flat, with the shape it is built with).
pub struct Placed {
    tensor: Tensor<1>,
    shape: Vec<usize>,
}

impl Placed {
    /// `data` (any shape) onto `device` in `dtype`; on the CPU device the bytes are moved, not
    /// copied.
    pub fn new(data: TensorData, dtype: ComputeDtype, device: &Device) -> Self {
        let (bytes, shape, stored) = data.into_parts();
        let shape: Vec<usize> = shape.to_vec();
        let n = shape.iter().product::<usize>();
        let flat = TensorData::from_bytes(bytes, [n], stored);
        Placed {
            tensor: Tensor::from_data(flat, (device, dtype.burn())),
            shape,
        }
    }
}

/// Build the model from tensors placed on the device, named as the checkpoint names them,
/// some linear weights kept in ggml blocks instead (named likewise).
pub fn build_model(
    config: &ModelConfig,
    tensors: HashMap<String, Placed>,
    blocks: HashMap<String, Blocks>,
    dtype: ComputeDtype,
    device: &Device,
) -> Result<CausalLm> {
    let mut l = Loader {
        tensors,
        blocks,
        device,
        dtype: dtype.burn(),
        eps: config.rms_norm_eps,
        unit_offset: config.gemma_norms,
    };
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let mut linears: HashMap<String, Linear> = HashMap::new();
        for spec in layer_linears(config, i) {
            let lin = l.linear(&format!("{p}.{}", spec.path), spec.bias)?;
            linears.insert(spec.path, lin);
        }
        let mut take = |path: &str| linears.remove(path);
        let a = format!("{p}.self_attn");
        let sliding_window = config.layer_windows[i];
        let self_attn = Attention {
            q_proj: take("self_attn.q_proj"),
            k_proj: take("self_attn.k_proj"),
            v_proj: take("self_attn.v_proj"),
            qkv_proj: take("self_attn.qkv_proj"),
            o_proj: take("self_attn.o_proj").ok_or_else(|| missing(&format!("{a}.o_proj")))?,
            q_norm: l.norm_if(config.qk_norm, &format!("{a}.q_norm"))?,
            k_norm: l.norm_if(config.qk_norm, &format!("{a}.k_norm"))?,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            sliding_window,
            scale: config.attn_scale,
            softcap: config.attn_logit_softcapping,
            local_rope: sliding_window.is_some() && config.rope_local_theta.is_some(),
        };
        let mut mlp = |prefix: &str| -> Result<Mlp> {
            let down = take(&format!("{prefix}.down_proj"))
                .ok_or_else(|| missing(&format!("{p}.{prefix}.down_proj")))?;
            Ok(Mlp::new(
                (
                    take(&format!("{prefix}.gate_proj")),
                    take(&format!("{prefix}.up_proj")),
                ),
                take(&format!("{prefix}.gate_up_proj")),
                down,
                config.hidden_act,
            ))
        };
        let feed_forward = match config.moe.as_ref().filter(|m| m.sparse_layers[i]) {
            None => FeedForward::Dense(mlp("mlp")?),
            Some(m) => {
                let experts = (0..m.num_experts)
                    .map(|e| mlp(&format!("mlp.experts.{e}")))
                    .collect::<Result<Vec<_>>>()?;
                let shared_expert = match m.shared_expert_intermediate_size {
                    Some(_) => Some(mlp("mlp.shared_expert")?),
                    None => None,
                };
                FeedForward::Sparse(SparseMoe {
                    gate: take("mlp.gate").ok_or_else(|| missing(&format!("{p}.mlp.gate")))?,
                    experts,
                    shared_expert,
                    shared_expert_gate: take("mlp.shared_expert_gate"),
                    top_k: m.top_k,
                    norm_topk_prob: m.norm_topk_prob,
                })
            }
        };
        let gemma = config.gemma_norms;
        layers.push(DecoderLayer {
            self_attn,
            mlp: feed_forward,
            input_layernorm: l.norm(&format!("{p}.input_layernorm"))?,
            post_attention_layernorm: l.norm(&format!("{p}.post_attention_layernorm"))?,
            pre_feedforward_layernorm: l
                .norm_if(gemma, &format!("{p}.pre_feedforward_layernorm"))?,
            post_feedforward_layernorm: l
                .norm_if(gemma, &format!("{p}.post_feedforward_layernorm"))?,
        });
    }
    let model = DecoderModel {
        embed_tokens: l.embedding("model.embed_tokens.weight")?,
        layers,
        norm: l.norm("model.norm")?,
        embed_scale: config
            .gemma_norms
            .then(|| dtype.round((config.hidden_size as f64).sqrt())),
    };
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(l.linear("lm_head", false)?)
    };
    Ok(CausalLm {
        model,
        lm_head,
        final_logit_softcapping: config.final_logit_softcapping,
    })
}

fn missing(module: &str) -> Error {
    Error::MissingTensor {
        name: format!("{module}.weight"),
        module: module.to_string(),
        expected: vec![],
    }
}

struct Loader<'a> {
    tensors: HashMap<String, Placed>,
    /// Linear weights kept in ggml blocks, by tensor name.
    blocks: HashMap<String, Blocks>,
    device: &'a Device,
    dtype: DType,
    eps: f64,
    unit_offset: bool,
}

impl Loader<'_> {
    fn param<const D: usize>(&mut self, name: &str) -> Result<Param<Tensor<D>>> {
        let missing = || Error::MissingTensor {
            name: name.to_string(),
            module: name.rsplit_once('.').map_or("", |(m, _)| m).to_string(),
            expected: vec![],
        };
        let placed = self.tensors.remove(name).ok_or_else(missing)?;
        let shape: [usize; D] = placed.shape.clone().try_into().map_err(|_| {
            Error::Invalid(format!(
                "{name}: shape {:?} is not of rank {D}",
                placed.shape
            ))
        })?;
        Ok(Param::from_tensor(placed.tensor.reshape(shape)))
    }
    /// A weight, or the placeholder of its shape (a broadcast zero) with its blocks.
    fn weight_or_blocks(&mut self, name: &str) -> Result<(Param<Tensor<2>>, Option<Blocks>)> {
        Ok(match self.blocks.remove(name) {
            Some(b) => (
                Param::from_tensor(
                    Tensor::<2>::zeros([1, 1], (self.device, self.dtype)).expand([b.rows, b.cols]),
                ),
                Some(b),
            ),
            None => (self.param(name)?, None),
        })
    }
    fn embedding(&mut self, name: &str) -> Result<Embedding> {
        let (weight, blocks) = self.weight_or_blocks(name)?;
        Ok(Embedding { weight, blocks })
    }
    fn linear(&mut self, path: &str, bias: bool) -> Result<Linear> {
        let (weight, blocks) = self.weight_or_blocks(&format!("{path}.weight"))?;
        Ok(Linear {
            weight,
            blocks,
            bias: if bias {
                Some(self.param(&format!("{path}.bias"))?)
            } else {
                None
            },
            lora: None,
        })
    }
    fn norm(&mut self, path: &str) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.param(&format!("{path}.weight"))?,
            eps: self.eps,
            unit_offset: self.unit_offset,
        })
    }
    fn norm_if(&mut self, present: bool, path: &str) -> Result<Option<RmsNorm>> {
        if present {
            self.norm(path).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A weight that may stay in blocks: a linear layer's (what the block kernel multiplies by) or
/// the embedding table (rows decoded as looked up; a tied head multiplies by its blocks).
pub fn may_keep(name: &str) -> bool {
    name.ends_with("_proj.weight")
        || name == "lm_head.weight"
        || name == "model.embed_tokens.weight"
}

/// Whether `device` is burn's CPU device (Flex), where the block kernels run, with or without
/// autodiff (training on a quantized base decodes the blocks for its tracked products).
pub fn on_flex(device: &Device) -> bool {
    Tensor::<1>::zeros([1], &device.clone().inner())
        .try_into_primitive::<burn::backend::Flex>()
        .is_ok()
}

/// The linear weights and embedding table of `tensors` (f32) quantized to `quant`'s blocks as
/// llama.cpp's reference quantizers make them (its fallback type where rows are not whole
/// blocks, its wider type for the head — the embedding table where `tied`), taken out of
/// `tensors`; weights whose rows are not whole 32-value blocks stay.
pub fn quantize_weights(
    tensors: &mut HashMap<String, TensorData>,
    quant: Quant,
    tied: bool,
    device: &Device,
) -> Result<HashMap<String, Blocks>> {
    check_quantizable(quant, device)?;
    let mut names: Vec<String> = tensors.keys().filter(|n| may_keep(n)).cloned().collect();
    names.sort();
    let mut out = HashMap::new();
    for name in names {
        if let Some(b) = quantize_one(&name, &tensors[&name], quant, tied)? {
            tensors.remove(&name);
            out.insert(name, b);
        }
    }
    Ok(out)
}

/// Quantized weights run where the block kernels do.
pub(crate) fn check_quantizable(quant: Quant, device: &Device) -> Result<()> {
    if !on_flex(device) || !crate::cpu::keeps(quant.ggml_type(), 256) {
        return Err(Error::Invalid(format!(
            "--dtype {}: quantized weights run on the CPU device (x86-64 with AVX2) for now; \
             on this device use f16 or bf16",
            quant.name()
        )));
    }
    Ok(())
}

/// One tensor (f32) as `quant`'s blocks, or None where it stays as it is: not a weight that
/// may be kept in blocks, not a matrix, or rows that are not whole blocks of any type the
/// kernels read.
pub(crate) fn quantize_one(
    name: &str,
    data: &TensorData,
    quant: Quant,
    tied: bool,
) -> Result<Option<Blocks>> {
    if !may_keep(name) {
        return Ok(None);
    }
    let [rows, cols] = data.shape()[..] else {
        return Ok(None);
    };
    let Some(t) = quant
        .for_weight(name, cols, tied)
        .filter(|&t| crate::cpu::keeps(t, cols))
    else {
        return Ok(None);
    };
    let values = data
        .as_slice::<f32>()
        .map_err(|e| Error::Invalid(format!("{name}: {e:?}")))?;
    let bytes = quantize_matrix(t, values, cols)?;
    Ok(Some(std::sync::Arc::new(crate::cpu::BlockMatrix {
        ggml_type: t,
        rows,
        cols,
        bytes,
    })))
}

impl Model {
    /// The model from host tensors (in the compute dtype) and weights already in blocks; with
    /// a quantized `dtype`, the remaining linear weights are quantized here.
    pub(crate) fn from_tensors(
        config: ModelConfig,
        mut tensors: HashMap<String, TensorData>,
        mut blocks: HashMap<String, Blocks>,
        dtype: WeightDtype,
        device: &Device,
        report: LoadReport,
    ) -> Result<Self> {
        if let Some(q) = dtype.quant() {
            let tied = config.tie_word_embeddings;
            blocks.extend(quantize_weights(&mut tensors, q, tied, device)?);
        }
        let compute = dtype.compute();
        let placed = tensors
            .into_iter()
            .map(|(name, data)| (name, Placed::new(data, compute, device)))
            .collect();
        Self::from_placed(config, placed, blocks, compute, device, report)
    }

    /// The model from tensors already on the device and weights in blocks.
    pub(crate) fn from_placed(
        config: ModelConfig,
        tensors: HashMap<String, Placed>,
        blocks: HashMap<String, Blocks>,
        dtype: ComputeDtype,
        device: &Device,
        report: LoadReport,
    ) -> Result<Self> {
        let lm = build_model(&config, tensors, blocks, dtype, device)?;
        Ok(Model::assemble(config, lm, dtype, device, report))
    }

    /// Load from safetensors files given as (file name, bytes), one tensor at a time
    /// ([`Feed`]): with a quantized `dtype` each linear weight is quantized as it is read, so no
    /// more than one of them is ever held in f32.
    pub fn from_safetensors(
        config: ModelConfig,
        files: &[(String, &[u8])],
        dtype: impl Into<WeightDtype>,
        device: &Device,
    ) -> Result<Self> {
        let headers = files
            .iter()
            .map(|(file, bytes)| FileHeader::parse(file, bytes, Some(bytes.len() as u64)))
            .collect::<Result<Vec<_>>>()?;
        let mut feed = Feed::safetensors(config, &headers, dtype, device)?;
        feed.put_whole(files)?;
        feed.finish()
    }

    /// Load from a burnpack file (what `hubscope export --format burnpack` writes).
    pub fn from_burnpack(
        config: ModelConfig,
        bytes: Vec<u8>,
        dtype: impl Into<WeightDtype>,
        device: &Device,
    ) -> Result<Self> {
        let dtype = dtype.into();
        let (header, mut data) =
            crate::burnpack::read_burnpack(crate::burnpack::BURNPACK_FILE, bytes)?;
        let report = plan_load(&config, &[header])?;
        let mut tensors = std::collections::HashMap::new();
        for e in report.loaded() {
            if let Some(d) = data.remove(&e.tensor) {
                tensors.insert(e.tensor.clone(), d.convert_dtype(dtype.compute().burn()));
            }
        }
        Self::from_tensors(config, tensors, HashMap::new(), dtype, device, report)
    }

    /// A model of this config with random weights (benchmarks of a shape, no download).
    pub fn random(
        config: ModelConfig,
        dtype: impl Into<WeightDtype>,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        let dtype = dtype.into();
        let tensors = random_weights(&config, dtype.compute(), seed);
        let report = LoadReport::default();
        Self::from_tensors(config, tensors, HashMap::new(), dtype, device, report)
    }
}
