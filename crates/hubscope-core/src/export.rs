//! Saving a model: its parameters read back from the device (async), written as Hugging Face
//! safetensors (one file or shards + index) or as burn's burnpack, with the config's dtype
//! updated. Produces bytes; the caller writes them (atomically, natively).

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bytes, DType, Tensor, TensorData};
use serde_json::{Value, json};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::weights::{ComputeDtype, FileHeader, TensorHeader};

/// Collects every float parameter with its dotted module path (the checkpoint name).
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        self.out.push((self.path.join("."), shape, t.reshape([n])));
    }
}

/// The model's parameters named as the checkpoint names them, in `dtype`, in module order.
/// A tied head is not a parameter of its own and is not listed (transformers does the same).
pub async fn named_tensors(
    lm: &CausalLm,
    dtype: ComputeDtype,
) -> Result<Vec<(String, TensorData)>> {
    let mut c = Collect::default();
    lm.visit(&mut c);
    let mut out = Vec::with_capacity(c.out.len());
    for (name, shape, t) in c.out {
        let data = t
            .cast(dtype.burn())
            .into_data_async()
            .await
            .map_err(|e| Error::Device(format!("{e:?}")))?;
        out.push((
            name,
            TensorData::from_bytes(data.into_bytes(), shape, dtype.burn()),
        ));
    }
    Ok(out)
}

fn st_dtype(d: DType) -> Result<safetensors::Dtype> {
    match d {
        DType::F32 => Ok(safetensors::Dtype::F32),
        DType::F16 => Ok(safetensors::Dtype::F16),
        DType::BF16 => Ok(safetensors::Dtype::BF16),
        other => Err(Error::Invalid(format!(
            "cannot write dtype {other:?} to safetensors"
        ))),
    }
}

/// A file to write: its name in the output folder and its bytes.
pub struct OutFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Safetensors the way `save_pretrained` writes them: `model.safetensors`, or
/// `model-0000N-of-0000M.safetensors` shards of at most `max_shard_bytes` (a tensor larger than
/// the limit gets a shard of its own) plus `model.safetensors.index.json`.
pub fn to_safetensors(
    tensors: &[(String, TensorData)],
    max_shard_bytes: u64,
) -> Result<Vec<OutFile>> {
    let mut shards: Vec<Vec<usize>> = vec![vec![]];
    let mut size = 0u64;
    for (i, (_, d)) in tensors.iter().enumerate() {
        let n = d.as_bytes().len() as u64;
        if size > 0 && size + n > max_shard_bytes {
            shards.push(vec![]);
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += n;
    }
    let total: u64 = tensors.iter().map(|(_, d)| d.as_bytes().len() as u64).sum();
    let count = shards.len();
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let mut files = vec![];
    let mut weight_map = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let name = if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", k + 1, count)
        };
        let mut views = vec![];
        for &i in shard {
            let (n, d) = &tensors[i];
            let view = safetensors::tensor::TensorView::new(
                st_dtype(d.dtype())?,
                d.shape().to_vec(),
                d.as_bytes(),
            )
            .map_err(|e| Error::Invalid(format!("{n}: {e}")))?;
            views.push((n.clone(), view));
            weight_map.insert(n.clone(), Value::String(name.clone()));
        }
        let bytes = safetensors::serialize(views, Some(meta.clone()))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        files.push(OutFile { name, bytes });
    }
    if count > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        files.push(OutFile {
            name: "model.safetensors.index.json".into(),
            bytes: serde_json::to_vec_pretty(&index).expect("json"),
        });
    }
    Ok(files)
}

/// The file name of a burnpack checkpoint in a model folder.
pub const BURNPACK_FILE: &str = "model.bpk";

/// The same tensors as one burnpack file.
pub fn to_burnpack(tensors: Vec<(String, TensorData)>) -> Result<Vec<u8>> {
    let packed = tensors
        .into_iter()
        .map(|(name, d)| {
            let (bytes, shape, dtype) = d.into_parts();
            burn_pack::Tensor::new(name, dtype, shape, None, bytes)
        })
        .collect();
    let bytes = burn_pack::Writer::new(packed)
        .with_metadata("producer", "hubscope")
        .into_bytes()
        .map_err(|e| Error::Invalid(format!("burnpack: {e}")))?;
    Ok(bytes.to_vec())
}

/// Read a burnpack checkpoint: its tensor list as a header (for the load plan) and the data.
pub fn read_burnpack(
    file: &str,
    bytes: Vec<u8>,
) -> Result<(FileHeader, HashMap<String, TensorData>)> {
    let bad = |e: burn_pack::Error| Error::Safetensors {
        file: file.to_string(),
        message: format!("not a valid burnpack file: {e}"),
    };
    let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(bad)?;
    let mut tensors = BTreeMap::new();
    let mut data = HashMap::new();
    for t in reader.into_tensors().map_err(bad)? {
        let (name, dtype, shape, _, bytes) = t.into_parts().map_err(bad)?;
        let dname = match dtype {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            _ => "unsupported",
        };
        tensors.insert(
            name.clone(),
            TensorHeader {
                file: file.to_string(),
                dtype: dname.to_string(),
                shape: shape.to_vec(),
                data_offsets: (0, bytes.len()),
            },
        );
        data.insert(name, TensorData::from_bytes(bytes, shape, dtype));
    }
    let header = FileHeader {
        file: file.to_string(),
        data_start: 0,
        tensors,
        data_len: 0,
    };
    Ok((header, data))
}

/// `config.json` for the exported model: the original, with its dtype field set to `dtype`
/// (`dtype` where the source used it, else `torch_dtype`).
pub fn export_config(config: &ModelConfig, dtype: ComputeDtype) -> Vec<u8> {
    let mut raw = config.raw.clone();
    let name = match dtype {
        ComputeDtype::F32 => "float32",
        ComputeDtype::F16 => "float16",
        ComputeDtype::BF16 => "bfloat16",
    };
    if let Some(o) = raw.as_object_mut() {
        let key = if o.contains_key("dtype") && !o.contains_key("torch_dtype") {
            "dtype"
        } else {
            "torch_dtype"
        };
        o.insert(key.to_string(), Value::String(name.into()));
    }
    let mut bytes = serde_json::to_vec_pretty(&raw).expect("json");
    bytes.push(b'\n');
    bytes
}
