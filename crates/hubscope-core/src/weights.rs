//! Safetensors checkpoints from bytes: headers (for `inspect` and the planner, no weight
//! data), shard indexes, and loading into the model tree with a load report.

use std::collections::{BTreeMap, HashMap};

use burn::module::Param;
use burn::tensor::{DType, Device, Tensor, TensorData};
use half::{bf16, f16};
use safetensors::SafeTensors;
use safetensors::tensor::Metadata;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::{
    Attention, CausalLm, DecoderLayer, DecoderModel, Embedding, Linear, Mlp, RmsNorm,
};
use crate::structure::{ParamSpec, model_tree};

/// Weight storage dtype of a checkpoint tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredDtype {
    F32,
    F16,
    BF16,
}

impl StoredDtype {
    pub fn bytes(self) -> usize {
        match self {
            StoredDtype::F32 => 4,
            _ => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "F32",
            StoredDtype::F16 => "F16",
            StoredDtype::BF16 => "BF16",
        }
    }
}

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TensorHeader {
    pub file: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range of the data, relative to the start of the data section.
    pub data_offsets: (usize, usize),
}

/// The header of a safetensors file, parsed from its first `8 + n` bytes.
#[derive(Debug, Clone)]
pub struct FileHeader {
    pub file: String,
    /// `8 + n`: where the data section starts.
    pub data_start: usize,
    pub tensors: BTreeMap<String, TensorHeader>,
    pub data_len: usize,
}

/// Length `n` of the JSON header, from the first 8 bytes of a safetensors file.
pub fn header_len(file: &str, first8: &[u8]) -> Result<usize> {
    let bytes: [u8; 8] = first8
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| safetensors_err(file, "shorter than the 8-byte header length"))?;
    let n = u64::from_le_bytes(bytes);
    if n < 2 {
        return Err(safetensors_err(
            file,
            format!("header length {n}: too short for a JSON header"),
        ));
    }
    if n > 100_000_000 {
        return Err(safetensors_err(
            file,
            format!("header length {n} is implausibly large"),
        ));
    }
    Ok(n as usize)
}

fn safetensors_err(file: &str, message: impl Into<String>) -> Error {
    Error::Safetensors {
        file: file.to_string(),
        message: message.into(),
    }
}

impl FileHeader {
    /// Parse from bytes that hold at least the header (`8 + n` bytes; the rest is ignored).
    /// `file_size`, when known, is checked against what the header describes.
    pub fn parse(file: &str, bytes: &[u8], file_size: Option<u64>) -> Result<Self> {
        let n = header_len(file, bytes)?;
        let json = bytes.get(8..8 + n).ok_or_else(|| {
            safetensors_err(
                file,
                format!(
                    "header length {n} runs past the end of the file ({} bytes)",
                    bytes.len()
                ),
            )
        })?;
        let meta: Metadata = serde_json::from_slice(json)
            .map_err(|e| safetensors_err(file, format!("bad header JSON: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let expect = info
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|e| e.checked_mul(info.dtype.bitsize()))
                .map(|bits| bits / 8);
            let (a, b) = info.data_offsets;
            if b < a || Some(b - a) != expect {
                return Err(safetensors_err(
                    file,
                    format!(
                        "tensor `{name}`: {} bytes of data for shape {:?} {:?}",
                        b.saturating_sub(a),
                        info.shape,
                        info.dtype
                    ),
                ));
            }
            tensors.insert(
                name.clone(),
                TensorHeader {
                    file: file.to_string(),
                    dtype: format!("{:?}", info.dtype),
                    shape: info.shape.clone(),
                    data_offsets: (a, b),
                },
            );
        }
        let data_len = meta.data_len();
        if let Some(size) = file_size {
            let need = (8 + n as u64).saturating_add(data_len as u64);
            if size < need {
                return Err(safetensors_err(
                    file,
                    format!("truncated: the header describes {need} bytes, the file has {size}"),
                ));
            }
        }
        Ok(FileHeader {
            file: file.to_string(),
            data_start: 8 + n,
            tensors,
            data_len,
        })
    }
}

/// `model.safetensors.index.json`: which shard holds each tensor.
#[derive(Debug, Clone, Deserialize)]
pub struct ShardIndex {
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::json("model.safetensors.index.json", e))
    }
    /// Shard file names in order, each once.
    pub fn shards(&self) -> Vec<String> {
        let mut v: Vec<String> = self.weight_map.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Compute dtype of the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDtype {
    F32,
    F16,
    BF16,
}

impl ComputeDtype {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            other => Err(Error::Invalid(format!(
                "unknown dtype `{other}` (f32, f16, bf16)"
            ))),
        }
    }
    pub fn burn(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        }
    }
}

/// One line of the load report: which checkpoint tensor went to which module parameter.
#[derive(Debug, Clone, Serialize)]
pub struct LoadEntry {
    pub tensor: String,
    pub file: String,
    pub module: String,
    pub shape: Vec<usize>,
    pub stored_dtype: String,
    /// "loaded", "tied" (shares another parameter) or "ignored" (a buffer transformers drops).
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub entries: Vec<LoadEntry>,
}

/// Convert raw little-endian safetensors data to `TensorData` of the compute dtype.
fn convert(bytes: &[u8], from: StoredDtype, to: ComputeDtype, shape: Vec<usize>) -> TensorData {
    fn read<T>(bytes: &[u8], n: usize, f: impl Fn([u8; 2]) -> T) -> Vec<T> {
        bytes.chunks_exact(n).map(|c| f([c[0], c[1]])).collect()
    }
    let as_f32 = || -> Vec<f32> {
        match from {
            StoredDtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StoredDtype::F16 => read(bytes, 2, |b| f16::from_le_bytes(b).to_f32()),
            StoredDtype::BF16 => read(bytes, 2, |b| bf16::from_le_bytes(b).to_f32()),
        }
    };
    match (from, to) {
        (_, ComputeDtype::F32) => TensorData::new(as_f32(), shape),
        (StoredDtype::F16, ComputeDtype::F16) => {
            TensorData::new(read(bytes, 2, f16::from_le_bytes), shape)
        }
        (StoredDtype::BF16, ComputeDtype::BF16) => {
            TensorData::new(read(bytes, 2, bf16::from_le_bytes), shape)
        }
        (_, ComputeDtype::F16) => TensorData::new(
            as_f32().into_iter().map(f16::from_f32).collect::<Vec<_>>(),
            shape,
        ),
        (_, ComputeDtype::BF16) => TensorData::new(
            as_f32().into_iter().map(bf16::from_f32).collect::<Vec<_>>(),
            shape,
        ),
    }
}

/// Buffers that checkpoints sometimes carry and transformers ignores.
fn is_ignored_buffer(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// Match the checkpoint's tensors (from headers alone) to the module tree: the load report.
/// Missing, unused or wrongly shaped tensors and unloadable dtypes are errors naming the tensor.
pub fn plan_load(config: &ModelConfig, headers: &[FileHeader]) -> Result<LoadReport> {
    let tree = model_tree(config);
    let mut tensors: HashMap<&str, &TensorHeader> = HashMap::new();
    for h in headers {
        for (name, t) in &h.tensors {
            tensors.insert(name, t);
        }
    }
    let module_of = |path: &str| path.rsplit_once('.').map_or("", |(m, _)| m).to_string();
    let mut report = LoadReport::default();
    for spec in tree.all_params() {
        let found = tensors.remove(spec.path.as_str());
        if let Some(target) = &spec.tied_to {
            // A tied head saved anyway is ignored: transformers ties it to the embedding.
            report.entries.push(LoadEntry {
                tensor: spec.path.clone(),
                file: found.map(|t| t.file.clone()).unwrap_or_default(),
                module: module_of(&spec.path),
                shape: spec.shape.clone(),
                stored_dtype: found.map(|t| t.dtype.clone()).unwrap_or_default(),
                status: if found.is_some() {
                    format!("ignored (tied to {target})")
                } else {
                    format!("tied to {target}")
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
        stored_dtype_name(&t.file, &spec.path, &t.dtype)?;
        report.entries.push(LoadEntry {
            tensor: spec.path.clone(),
            file: t.file.clone(),
            module: module_of(&spec.path),
            shape: spec.shape.clone(),
            stored_dtype: t.dtype.clone(),
            status: "loaded".into(),
        });
    }
    let mut rest: Vec<_> = tensors.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    for (name, t) in rest {
        if !is_ignored_buffer(name) {
            return Err(Error::UnusedTensor {
                file: t.file.clone(),
                name: name.to_string(),
                shape: t.shape.clone(),
                arch: tree.class,
            });
        }
        report.entries.push(LoadEntry {
            tensor: name.to_string(),
            file: t.file.clone(),
            module: String::new(),
            shape: t.shape.clone(),
            stored_dtype: t.dtype.clone(),
            status: "ignored (buffer)".into(),
        });
    }
    Ok(report)
}

fn stored_dtype_name(file: &str, name: &str, dtype: &str) -> Result<StoredDtype> {
    match dtype {
        "F32" => Ok(StoredDtype::F32),
        "F16" => Ok(StoredDtype::F16),
        "BF16" => Ok(StoredDtype::BF16),
        other => Err(Error::UnsupportedDtype {
            file: file.into(),
            name: name.into(),
            dtype: other.into(),
        }),
    }
}

/// Take every parameter of the tree from the given safetensors files (name, full bytes),
/// converted to the compute dtype, with the load report.
pub fn read_checkpoint(
    config: &ModelConfig,
    files: &[(String, &[u8])],
    dtype: ComputeDtype,
) -> Result<(HashMap<String, TensorData>, LoadReport)> {
    let headers = files
        .iter()
        .map(|(file, bytes)| FileHeader::parse(file, bytes, Some(bytes.len() as u64)))
        .collect::<Result<Vec<_>>>()?;
    let report = plan_load(config, &headers)?;
    let mut views = HashMap::new();
    for (file, bytes) in files {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| safetensors_err(file, e.to_string()))?;
        for (name, view) in st.tensors() {
            views.insert(name, view);
        }
    }
    let mut out = HashMap::new();
    for e in report.entries.iter().filter(|e| e.status == "loaded") {
        let view = views
            .remove(&e.tensor)
            .ok_or_else(|| safetensors_err(&e.file, format!("tensor `{}` vanished", e.tensor)))?;
        let sd = stored_dtype_name(&e.file, &e.tensor, &e.stored_dtype)?;
        out.insert(
            e.tensor.clone(),
            convert(view.data(), sd, dtype, e.shape.clone()),
        );
    }
    Ok((out, report))
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
        let vals: Vec<f32> = (0..spec.numel())
            .map(|_| {
                let x = (next() + next()) * 0.5;
                if is_norm { 1.0 + 0.1 * x } else { 0.035 * x }
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

/// Build the model from host tensors named as the checkpoint names them.
pub fn build_model(
    config: &ModelConfig,
    tensors: HashMap<String, TensorData>,
    dtype: ComputeDtype,
    device: &Device,
) -> Result<CausalLm> {
    let mut l = Loader {
        tensors,
        device,
        dtype: dtype.burn(),
    };
    let eps = config.rms_norm_eps;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        let qwen3 = config.family == crate::config::Family::Qwen3;
        let self_attn = Attention {
            q_proj: l.linear(&format!("{a}.q_proj"), config.qkv_bias)?,
            k_proj: l.linear(&format!("{a}.k_proj"), config.qkv_bias)?,
            v_proj: l.linear(&format!("{a}.v_proj"), config.qkv_bias)?,
            o_proj: l.linear(&format!("{a}.o_proj"), config.o_bias)?,
            q_norm: if qwen3 {
                Some(l.norm(&format!("{a}.q_norm"), eps)?)
            } else {
                None
            },
            k_norm: if qwen3 {
                Some(l.norm(&format!("{a}.k_norm"), eps)?)
            } else {
                None
            },
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            sliding_window: config.layer_windows[i],
        };
        let m = format!("{p}.mlp");
        let mlp = Mlp {
            gate_proj: l.linear(&format!("{m}.gate_proj"), config.mlp_bias)?,
            up_proj: l.linear(&format!("{m}.up_proj"), config.mlp_bias)?,
            down_proj: l.linear(&format!("{m}.down_proj"), config.mlp_bias)?,
        };
        layers.push(DecoderLayer {
            self_attn,
            mlp,
            input_layernorm: l.norm(&format!("{p}.input_layernorm"), eps)?,
            post_attention_layernorm: l.norm(&format!("{p}.post_attention_layernorm"), eps)?,
        });
    }
    let model = DecoderModel {
        embed_tokens: Embedding {
            weight: l.param("model.embed_tokens.weight")?,
        },
        layers,
        norm: l.norm("model.norm", eps)?,
    };
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(l.linear("lm_head", false)?)
    };
    Ok(CausalLm { model, lm_head })
}

struct Loader<'a> {
    tensors: HashMap<String, TensorData>,
    device: &'a Device,
    dtype: DType,
}

impl Loader<'_> {
    fn param<const D: usize>(&mut self, name: &str) -> Result<Param<Tensor<D>>> {
        let data = self
            .tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                module: name.rsplit_once('.').map_or("", |(m, _)| m).to_string(),
                expected: vec![],
            })?;
        Ok(Param::from_tensor(Tensor::from_data(
            data,
            (self.device, self.dtype),
        )))
    }
    fn linear(&mut self, path: &str, bias: bool) -> Result<Linear> {
        Ok(Linear {
            weight: self.param(&format!("{path}.weight"))?,
            bias: if bias {
                Some(self.param(&format!("{path}.bias"))?)
            } else {
                None
            },
            lora: None,
        })
    }
    fn norm(&mut self, path: &str, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.param(&format!("{path}.weight"))?,
            eps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_length_must_hold_a_json_object() {
        for n in [0u64, 1, 100_000_001] {
            let e = header_len("x.safetensors", &n.to_le_bytes()).unwrap_err();
            assert!(e.to_string().contains("x.safetensors"), "{e}");
        }
        assert_eq!(header_len("x", &2u64.to_le_bytes()).unwrap(), 2);
        assert!(header_len("x", &[1, 2, 3]).is_err());
    }

    #[test]
    fn half_precision_storage_converts_exactly() {
        let vals = [1.0f32, -2.5, 0.099_975_586, 65504.0];
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect();
        let a = convert(&f16b, StoredDtype::F16, ComputeDtype::F32, vec![4])
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            a,
            vals.iter()
                .map(|v| f16::from_f32(*v).to_f32())
                .collect::<Vec<_>>()
        );
        let b = convert(&bf16b, StoredDtype::BF16, ComputeDtype::F32, vec![4])
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            b,
            vals.iter()
                .map(|v| bf16::from_f32(*v).to_f32())
                .collect::<Vec<_>>()
        );
        let c = convert(&bf16b, StoredDtype::BF16, ComputeDtype::BF16, vec![4])
            .try_to_vec::<bf16>()
            .unwrap();
        assert_eq!(c[1], bf16::from_f32(-2.5));
    }

    #[test]
    fn header_errors_name_the_file() {
        let e = FileHeader::parse("x.safetensors", &[1, 2, 3], None).unwrap_err();
        assert!(e.to_string().contains("x.safetensors"));
        let mut b = 100u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        let e = FileHeader::parse("x.safetensors", &b, None).unwrap_err();
        assert!(e.to_string().contains("runs past the end"), "{e}");
    }
}
