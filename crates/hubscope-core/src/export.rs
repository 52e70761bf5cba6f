//! Saving a model: its parameters read back from the device (async) under their checkpoint
//! names, and the config with its dtype updated. The formats write the bytes
//! (`safetensors::to_safetensors`, `burnpack::to_burnpack`); the caller writes the files.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use serde_json::Value;

use crate::config::ModelConfig;
use crate::dtype::ComputeDtype;
use crate::error::{Error, Result};
use crate::model::CausalLm;

/// Collects every float parameter with its dotted module path (the checkpoint name).
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Tensor<1>)>,
}

/// An enum module's variant (`FeedForward::Dense`) is not part of the checkpoint name.
fn named(container: &str) -> bool {
    !container.starts_with("Enum:")
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, container: &str) {
        if named(container) {
            self.path.push(name.to_string());
        }
    }
    fn exit_module(&mut self, _name: &str, container: &str) {
        if named(container) {
            self.path.pop();
        }
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
