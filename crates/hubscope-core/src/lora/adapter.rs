//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `.lora_B.weight` (`[out, r]`).
//! Attach one to the model (generation with an adapter), initialise a fresh one, merge it into
//! the base weights (export), mark it trainable or frozen, and write it back as files.

use std::collections::HashMap;

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::OutFile;
use crate::config::ModelConfig;
use crate::dtype::ComputeDtype;
use crate::error::{Error, Result};
use crate::layout::{linear_names, projection_names};
use crate::model::{Linear, Lora, Model};
use crate::safetensors::{FileHeader, StoredDtype, convert};

/// The fields of PEFT's `adapter_config.json` that hubscope reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

fn default_bias() -> String {
    "none".into()
}

impl AdapterConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let c: AdapterConfig =
            serde_json::from_slice(bytes).map_err(|e| Error::json("adapter_config.json", e))?;
        let bad = |field: &str, message: &str| Error::InvalidField {
            file: "adapter_config.json".into(),
            field: field.into(),
            message: message.into(),
        };
        if c.use_dora {
            return Err(bad("use_dora", "DoRA adapters are not supported"));
        }
        if c.bias != "none" {
            return Err(bad("bias", "only bias = \"none\" adapters are supported"));
        }
        if c.r == 0 {
            return Err(bad("r", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&c.lora_dropout) {
            return Err(bad("lora_dropout", "must be in [0, 1)"));
        }
        if c.target_modules.is_empty() {
            return Err(bad("target_modules", "names no module"));
        }
        Ok(c)
    }

    /// A new adapter's settings, checked: rank ≥ 1, dropout in [0, 1). Its targets are the
    /// family's projections until [`AdapterConfig::target`] sets them for a model.
    pub fn fresh(r: usize, lora_alpha: f64, lora_dropout: f64) -> Result<Self> {
        let bad = |field: &str, message: String| Error::InvalidField {
            file: "LoRA settings".into(),
            field: field.into(),
            message,
        };
        if r == 0 {
            return Err(bad("rank", "must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&lora_dropout) {
            return Err(bad("dropout", format!("{lora_dropout} is not in [0, 1)")));
        }
        let targets: Vec<String> = vec![];
        Ok(AdapterConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules: targets,
            use_rslora: false,
            use_dora: false,
            bias: "none".into(),
            base_model_name_or_path: None,
        })
    }

    /// Set the targets for `model`: `targets`, or the family's projections when None; each
    /// must name a linear layer of the model.
    pub fn target(mut self, model: &ModelConfig, targets: Option<&[String]>) -> Result<Self> {
        let targets = match targets {
            Some(t) if !t.is_empty() => t.to_vec(),
            _ => projection_names(model),
        };
        check_targets(model, &targets).map_err(|message| Error::InvalidField {
            file: "LoRA settings".into(),
            field: "target".into(),
            message,
        })?;
        self.target_modules = targets;
        Ok(self)
    }

    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// `adapter_config.json` as PEFT writes it (the keys PEFT needs to load it).
    pub fn to_json(&self, base: &str) -> Vec<u8> {
        let mut targets = self.target_modules.clone();
        targets.sort();
        let v = serde_json::json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base,
            "r": self.r, "lora_alpha": self.lora_alpha, "lora_dropout": self.lora_dropout,
            "target_modules": targets, "bias": "none", "use_rslora": self.use_rslora, "use_dora": false,
            "fan_in_fan_out": false, "init_lora_weights": true, "inference_mode": true,
            "modules_to_save": null, "layers_to_transform": null, "layers_pattern": null,
            "rank_pattern": {}, "alpha_pattern": {}, "revision": null,
        });
        let mut b = serde_json::to_vec_pretty(&v).expect("json");
        b.push(b'\n');
        b
    }
}

/// `model.layers.3.self_attn.q_proj` ↔ PEFT's `base_model.model.model.layers.3.self_attn.q_proj`.
pub fn peft_key(module: &str, which: char) -> String {
    format!("base_model.model.{module}.lora_{which}.weight")
}

/// Every target names a linear layer of this model (PEFT matches a module by its last name).
fn check_targets(model: &ModelConfig, targets: &[String]) -> std::result::Result<(), String> {
    let names = linear_names(model);
    match targets.iter().find(|t| !names.contains(t)) {
        Some(t) => Err(format!(
            "`{t}` is not a linear layer of this {} model ({})",
            model.model_type,
            names.join(", ")
        )),
        None => Ok(()),
    }
}

/// Every (module path, linear) of the decoder, in module order.
fn linears(model: &mut Model) -> Vec<(String, &mut Linear)> {
    let mut out = vec![];
    for (i, layer) in model.lm.model.layers.iter_mut().enumerate() {
        for (path, lin) in layer.linears_mut() {
            out.push((format!("model.layers.{i}.{path}"), lin));
        }
    }
    out
}

/// Every (module path, linear) of the decoder that `targets` selects by last name.
fn targeted<'a>(model: &'a mut Model, targets: &[String]) -> Vec<(String, &'a mut Linear)> {
    linears(model)
        .into_iter()
        .filter(|(path, _)| {
            let name = path.rsplit('.').next().unwrap_or(path);
            targets.iter().any(|t| t == name)
        })
        .collect()
}

/// Attach a PEFT adapter (config + safetensors bytes) to the model's linear layers. Every
/// targeted layer must have its A and B with the right shapes; any other tensor is an error.
pub fn attach(model: &mut Model, config: &AdapterConfig, weights: &[u8]) -> Result<usize> {
    const FILE: &str = "adapter_model.safetensors";
    let header = FileHeader::parse(FILE, weights, Some(weights.len() as u64))?;
    let st = safetensors::SafeTensors::deserialize(weights).map_err(|e| Error::Safetensors {
        file: FILE.into(),
        message: e.to_string(),
    })?;
    check_targets(&model.config, &config.target_modules).map_err(|message| {
        Error::InvalidField {
            file: "adapter_config.json".into(),
            field: "target_modules".into(),
            message,
        }
    })?;
    let mut left: HashMap<String, ()> = header.tensors.keys().map(|k| (k.clone(), ())).collect();
    let (device, dtype, r, scale) = (model.device.clone(), model.dtype, config.r, config.scale());
    let mut count = 0;
    for (path, lin) in targeted(model, &config.target_modules) {
        let [out_f, in_f] = lin.weight.val().dims();
        let mut take = |which: char, shape: [usize; 2]| -> Result<Param<Tensor<2>>> {
            let key = peft_key(&path, which);
            left.remove(&key);
            let view = st.tensor(&key).map_err(|_| Error::MissingTensor {
                name: key.clone(),
                module: path.clone(),
                expected: shape.to_vec(),
            })?;
            if view.shape() != shape {
                return Err(Error::ShapeMismatch {
                    file: FILE.into(),
                    name: key,
                    expected: shape.to_vec(),
                    found: view.shape().to_vec(),
                });
            }
            let stored = StoredDtype::of(FILE, &key, header.tensors[&key].dtype)?;
            let t: Tensor<2> = Tensor::from_data(
                convert(view.data(), stored, ComputeDtype::F32, shape.to_vec()),
                (&device, DType::F32),
            );
            let t = t.cast(dtype.burn());
            Ok(Param::from_tensor(t))
        };
        let lora_a = take('A', [r, in_f])?;
        let lora_b = take('B', [out_f, r])?;
        lin.lora = Some(Lora {
            lora_a,
            lora_b,
            scale,
            dropout: config.lora_dropout,
            training: false,
        });
        count += 1;
    }
    if let Some(k) = left.keys().next() {
        return Err(Error::UnusedTensor {
            file: FILE.into(),
            name: k.clone(),
            shape: header.tensors[k].shape.clone(),
            arch: "LoRA adapter".into(),
        });
    }
    Ok(count)
}

/// Adapters of every linear layer in module order (None where a layer has none), held apart
/// from the model: one base serves several adapters by swapping them in ([`put_adapters`]).
pub type Adapters = Vec<Option<Lora>>;

/// Take the attached adapters out of the model (which is the plain base model after).
pub fn take_adapters(model: &mut Model) -> Adapters {
    linears(model)
        .into_iter()
        .map(|(_, l)| l.lora.take())
        .collect()
}

/// Attach `adapters` (from [`take_adapters`] on this model) in place of what is attached;
/// an empty list means none.
pub fn put_adapters(model: &mut Model, adapters: &Adapters) {
    for (i, (_, l)) in linears(model).into_iter().enumerate() {
        l.lora = adapters.get(i).cloned().flatten();
    }
}

/// Whether some linear weight of the decoder stays in ggml blocks (a QLoRA base).
pub fn quantized_base(model: &mut Model) -> bool {
    linears(model).iter().any(|(_, l)| l.blocks.is_some())
}

/// Fold every attached adapter into its base weight (`W + scale · B A`) and drop it.
pub fn merge(model: &mut Model) {
    for (_, lin) in linears(model) {
        if let Some(l) = lin.lora.take() {
            let delta = l
                .lora_b
                .val()
                .cast(DType::F32)
                .matmul(l.lora_a.val().cast(DType::F32))
                * l.scale;
            let w = lin.weight.val();
            let dtype = w.dtype();
            lin.weight = Param::from_tensor((w.cast(DType::F32) + delta).cast(dtype));
        }
    }
}

/// The adapters as PEFT's safetensors tensors, read back from the device.
pub async fn adapter_tensors(model: &mut Model) -> Result<Vec<(String, TensorData)>> {
    let mut out = vec![];
    for (path, lin) in linears(model) {
        if let Some(l) = &lin.lora {
            for (which, p) in [('A', &l.lora_a), ('B', &l.lora_b)] {
                let d = p
                    .val()
                    .cast(DType::F32)
                    .into_data_async()
                    .await
                    .map_err(|e| Error::Device(format!("{e:?}")))?;
                out.push((peft_key(&path, which), d));
            }
        }
    }
    Ok(out)
}

/// PEFT's `adapter_model.safetensors` from [`adapter_tensors`].
pub fn adapter_safetensors(tensors: &[(String, TensorData)]) -> Result<Vec<u8>> {
    let all: Vec<&(String, TensorData)> = tensors.iter().collect();
    crate::safetensors::serialize("adapter_model.safetensors", &all)
}

/// The adapter folder PEFT loads: `adapter_config.json` and `adapter_model.safetensors`.
pub async fn adapter_files(
    model: &mut Model,
    config: &AdapterConfig,
    base_model: &str,
) -> Result<Vec<OutFile>> {
    let tensors = adapter_tensors(model).await?;
    Ok(vec![
        OutFile {
            name: "adapter_config.json".into(),
            bytes: config.to_json(base_model),
        },
        OutFile {
            name: "adapter_model.safetensors".into(),
            bytes: adapter_safetensors(&tensors)?,
        },
    ])
}

/// PEFT's default initialisation of a fresh adapter: A ~ kaiming-uniform(a=√5), i.e.
/// U(−1/√in, 1/√in), and B = 0, so training starts from the base model exactly.
pub fn init_adapter(model: &mut Model, config: &AdapterConfig, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let (device, dtype, r, scale) = (model.device.clone(), model.dtype, config.r, config.scale());
    for (_, lin) in targeted(model, &config.target_modules) {
        let [out_f, in_f] = lin.weight.val().dims();
        let bound = 1.0 / (in_f as f32).sqrt();
        let a: Vec<f32> = (0..r * in_f).map(|_| uniform() * bound).collect();
        let a: Tensor<2> = Tensor::from_data(TensorData::new(a, [r, in_f]), (&device, DType::F32));
        let b: Tensor<2> = Tensor::zeros([out_f, r], (&device, DType::F32));
        lin.lora = Some(Lora {
            lora_a: Param::from_tensor(a.cast(dtype.burn())),
            lora_b: Param::from_tensor(b.cast(dtype.burn())),
            scale,
            dropout: config.lora_dropout,
            training: false,
        });
    }
}

/// Every attached adapter, in module order (A then B of each layer).
pub(super) fn adapters(model: &mut Model) -> Vec<&mut Param<Tensor<2>>> {
    let mut out = vec![];
    for (_, lin) in linears(model) {
        if let Some(l) = lin.lora.as_mut() {
            out.push(&mut l.lora_a);
            out.push(&mut l.lora_b);
        }
    }
    out
}

/// Whether some adapter drops part of its input while training.
pub(super) fn has_dropout(model: &mut Model) -> bool {
    linears(model)
        .iter()
        .any(|(_, lin)| lin.lora.as_ref().is_some_and(|l| l.dropout > 0.0))
}

/// Mark the adapters as the only trainable parameters (the model must live on an autodiff
/// device; base weights stay untracked, so they get no gradient memory).
pub fn make_trainable(model: &mut Model) {
    // Loaded weights are parameters that would take gradients on an autodiff device (burn's
    // `Param::from_tensor`): every one is frozen first, then the adapters made trainable.
    model.lm = model.lm.clone().no_grad();
    set_training(model, true);
    for p in adapters(model) {
        let t = p.val().detach().require_grad();
        *p = Param::from_tensor(t);
    }
}

fn set_training(model: &mut Model, on: bool) {
    for (_, lin) in linears(model) {
        if let Some(l) = lin.lora.as_mut() {
            l.training = on;
        }
    }
}

/// The attached adapters with their tensors cut from the autodiff graph (same values, same
/// dropout): a forward pass with them records nothing for a backward pass.
pub(super) fn untracked(adapters: &Adapters) -> Adapters {
    adapters
        .iter()
        .map(|a| {
            a.as_ref().map(|l| Lora {
                lora_a: Param::from_tensor(l.lora_a.val().detach()).set_require_grad(false),
                lora_b: Param::from_tensor(l.lora_b.val().detach()).set_require_grad(false),
                ..l.clone()
            })
        })
        .collect()
}

/// Stop training: the adapters become constants (no graph is recorded, no dropout), so the
/// trained model generates at inference speed.
pub fn freeze(model: &mut Model) {
    set_training(model, false);
    for p in adapters(model) {
        let t = p.val().detach();
        *p = Param::from_tensor(t).set_require_grad(false);
    }
}

/// Trainable LoRA parameters attached to the model.
pub fn trainable_params(model: &mut Model) -> usize {
    adapters(model)
        .iter()
        .map(|p| p.val().dims().iter().product::<usize>())
        .sum()
}
