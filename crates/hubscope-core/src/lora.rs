//! LoRA adapters in PEFT's format: `adapter_config.json` + `adapter_model.safetensors` with keys
//! `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `.lora_B.weight` (`[out, r]`).
//! Attach one to the model (generation with an adapter), merge it into the base weights
//! (export), and the causal-LM loss used to check and train it.

use std::collections::HashMap;

use burn::module::Param;
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::generate::Model;
use crate::model::{Linear, Lora};
use crate::weights::FileHeader;

/// The linear layers LoRA can target, by their checkpoint names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

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
        for t in &c.target_modules {
            if !TARGETS.contains(&t.as_str()) {
                return Err(bad(
                    "target_modules",
                    &format!(
                        "`{t}` is not a linear layer of this model ({})",
                        TARGETS.join(", ")
                    ),
                ));
            }
        }
        Ok(c)
    }

    /// A new adapter's settings, checked: rank ≥ 1, dropout in [0, 1), known targets.
    pub fn fresh(r: usize, lora_alpha: f64, lora_dropout: f64, targets: &[String]) -> Result<Self> {
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
        if targets.is_empty() {
            return Err(bad("target", "name at least one linear layer".into()));
        }
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                return Err(bad(
                    "target",
                    format!("`{t}` is not a linear layer ({})", TARGETS.join(", ")),
                ));
            }
        }
        Ok(AdapterConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules: targets.to_vec(),
            use_rslora: false,
            use_dora: false,
            bias: "none".into(),
            base_model_name_or_path: None,
        })
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

/// Every (module path, linear) of the decoder that `targets` selects.
fn targeted<'a>(model: &'a mut Model, targets: &[String]) -> Vec<(String, &'a mut Linear)> {
    let mut out = vec![];
    for (i, layer) in model.lm.model.layers.iter_mut().enumerate() {
        let a = &mut layer.self_attn;
        let m = &mut layer.mlp;
        let all: [(&str, &str, &mut Linear); 7] = [
            ("self_attn", "q_proj", &mut a.q_proj),
            ("self_attn", "k_proj", &mut a.k_proj),
            ("self_attn", "v_proj", &mut a.v_proj),
            ("self_attn", "o_proj", &mut a.o_proj),
            ("mlp", "gate_proj", &mut m.gate_proj),
            ("mlp", "up_proj", &mut m.up_proj),
            ("mlp", "down_proj", &mut m.down_proj),
        ];
        for (block, name, lin) in all {
            if targets.iter().any(|t| t == name) {
                out.push((format!("model.layers.{i}.{block}.{name}"), lin));
            }
        }
    }
    out
}

fn to_f32(file: &str, name: &str, dtype: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                file: file.into(),
                name: name.into(),
                dtype: other.into(),
            });
        }
    })
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
            let vals = to_f32(FILE, &key, &header.tensors[&key].dtype, view.data())?;
            let t: Tensor<2> =
                Tensor::from_data(TensorData::new(vals, shape), (&device, DType::F32));
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

/// Fold every attached adapter into its base weight (`W + scale · B A`) and drop it.
pub fn merge(model: &mut Model) {
    for (_, lin) in targeted(
        model,
        &TARGETS.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    ) {
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
    for (path, lin) in targeted(
        model,
        &TARGETS.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    ) {
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
    let st_err = |e: safetensors::SafeTensorError| Error::Safetensors {
        file: "adapter_model.safetensors".into(),
        message: e.to_string(),
    };
    let mut views = vec![];
    for (n, d) in tensors {
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            d.shape().to_vec(),
            d.as_bytes(),
        )
        .map_err(st_err)?;
        views.push((n.clone(), view));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(views, Some(meta)).map_err(st_err)
}

/// The adapter folder PEFT loads: `adapter_config.json` and `adapter_model.safetensors`.
pub async fn adapter_files(
    model: &mut Model,
    config: &AdapterConfig,
    base_model: &str,
) -> Result<Vec<crate::export::OutFile>> {
    let tensors = adapter_tensors(model).await?;
    Ok(vec![
        crate::export::OutFile {
            name: "adapter_config.json".into(),
            bytes: config.to_json(base_model),
        },
        crate::export::OutFile {
            name: "adapter_model.safetensors".into(),
            bytes: adapter_safetensors(&tensors)?,
        },
    ])
}

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
    let n = ids.len();
    if n < 2 || labels.len() != n {
        return Err(Error::Invalid(
            "an example needs at least two tokens and one label per token".into(),
        ));
    }
    let (logits, _) = model.forward_traced(ids)?;
    let vocab = model.config.vocab_size;
    // [n-1, vocab] log-probabilities of the next token
    let lp = log_softmax(
        logits
            .cast(DType::F32)
            .reshape([n, vocab])
            .slice([0..n - 1, 0..vocab]),
        1,
    );
    let shifted: Vec<i64> = labels[1..].to_vec();
    let keep: Vec<f32> = shifted
        .iter()
        .map(|&l| if l >= 0 { 1.0 } else { 0.0 })
        .collect();
    let count: f32 = keep.iter().sum();
    if count == 0.0 {
        return Err(Error::Invalid(
            "an example has no labelled tokens after its prompt".into(),
        ));
    }
    let idx: Vec<i64> = shifted.iter().map(|&l| l.max(0)).collect();
    let device: Device = model.device.clone();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n - 1, 1]), &device);
    let picked = lp.gather(1, idx).reshape([n - 1]); // [n-1]
    let keep = Tensor::<1>::from_data(TensorData::new(keep, [n - 1]), (&device, DType::F32));
    Ok(((picked * keep).sum().neg(), count as usize))
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
    step: i32,
    moments: Vec<(Tensor<2>, Tensor<2>)>,
}

impl AdamW {
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamW {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments: vec![],
        }
    }
}

/// Every attached adapter, in module order (A then B of each layer).
fn adapters(model: &mut Model) -> Vec<&mut Param<Tensor<2>>> {
    let all: Vec<String> = TARGETS.iter().map(|s| s.to_string()).collect();
    let mut out = vec![];
    for (_, lin) in targeted(model, &all) {
        if let Some(l) = lin.lora.as_mut() {
            out.push(&mut l.lora_a);
            out.push(&mut l.lora_b);
        }
    }
    out
}

/// Mark the adapters as the only trainable parameters (the model must live on an autodiff
/// device; base weights stay untracked, so they get no gradient memory).
pub fn make_trainable(model: &mut Model) {
    for p in adapters(model) {
        let t = p.val().detach().require_grad();
        *p = Param::from_tensor(t);
    }
}

/// Stop training: the adapters become constants (no graph is recorded, no dropout), so the
/// trained model generates at inference speed.
pub fn freeze(model: &mut Model) {
    for p in adapters(model) {
        let t = p.val().detach();
        *p = Param::from_tensor(t);
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
    next: usize,
    tokens: usize,
}

impl Trainer {
    pub fn new(
        examples: Vec<Example>,
        batch_size: usize,
        epochs: usize,
        opt: AdamW,
    ) -> Result<Self> {
        if examples.is_empty() {
            return Err(Error::Invalid("no training examples".into()));
        }
        if batch_size == 0 || epochs == 0 {
            return Err(Error::Invalid(
                "batch size and epochs must be at least 1".into(),
            ));
        }
        Ok(Trainer {
            examples,
            batch_size,
            epochs,
            opt,
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
        let loss = train_batch(model, batch, &mut self.opt).await?;
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

/// Trainable LoRA parameters attached to the model.
pub fn trainable_params(model: &mut Model) -> usize {
    adapters(model)
        .iter()
        .map(|p| p.val().dims().iter().product::<usize>())
        .sum()
}

/// One optimizer step on one example; returns the example's loss before the update.
pub async fn train_step(model: &mut Model, ex: &Example, opt: &mut AdamW) -> Result<f32> {
    train_batch(model, std::slice::from_ref(ex), opt).await
}

/// One optimizer step on a batch; returns the batch's loss before the update: the mean over
/// all labelled tokens of the batch, as transformers' causal-LM loss of a padded batch is
/// (not the mean of per-example means).
pub async fn train_batch(model: &mut Model, batch: &[Example], opt: &mut AdamW) -> Result<f32> {
    let mut loss: Option<Tensor<1>> = None;
    let mut tokens = 0usize;
    for ex in batch {
        let (l, n) = causal_lm_loss_sum(model, &ex.ids, &ex.labels)?;
        tokens += n;
        loss = Some(match loss {
            Some(acc) => acc + l,
            None => l,
        });
    }
    let loss = loss.ok_or_else(|| Error::Invalid("an empty batch".into()))? / tokens as f64;
    let grads = loss.backward();
    let value = crate::generate::read_f32(loss.detach()).await?[0];
    opt.step += 1;
    let (b1, b2) = opt.betas;
    let bc1 = 1.0 - b1.powi(opt.step);
    let bc2 = 1.0 - b2.powi(opt.step);
    let step_size = opt.lr / bc1;
    let first = opt.moments.is_empty();
    let params = adapters(model);
    for (k, p) in params.into_iter().enumerate() {
        let w = p.val();
        let g = w
            .grad(&grads)
            .ok_or_else(|| Error::Invalid("a LoRA parameter got no gradient".into()))?;
        let w = w.inner();
        if first {
            opt.moments.push((w.zeros_like(), w.zeros_like()));
        }
        let (m, v) = &mut opt.moments[k];
        *m = m.clone() * b1 + g.clone() * (1.0 - b1);
        *v = v.clone() * b2 + g.clone() * g * (1.0 - b2);
        let w = w * (1.0 - opt.lr * opt.weight_decay);
        let denom = v.clone().sqrt() / bc2.sqrt() + opt.eps;
        let w = w - m.clone() / denom * step_size;
        *p = Param::from_tensor(Tensor::from_inner(w).require_grad());
    }
    Ok(value)
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
        });
    }
}

/// Turn chat JSONL (`{"messages": [...]}`) or alpaca JSONL (`{"instruction", "input",
/// "output"}`) into messages; a bad line is an error naming its number.
pub fn parse_jsonl(text: &str) -> Result<Vec<Vec<crate::text::Message>>> {
    use crate::text::Message;
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |m: &str| Error::Invalid(format!("data line {}: {m}", i + 1));
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let messages: Vec<Message> = if let Some(m) = v.get("messages") {
            serde_json::from_value(m.clone()).map_err(|e| {
                bad(&format!(
                    "`messages` must be a list of {{role, content}}: {e}"
                ))
            })?
        } else if let (Some(ins), Some(out_t)) = (
            v.get("instruction").and_then(|x| x.as_str()),
            v.get("output").and_then(|x| x.as_str()),
        ) {
            let input = v.get("input").and_then(|x| x.as_str()).unwrap_or("");
            let user = if input.is_empty() {
                ins.to_string()
            } else {
                format!("{ins}\n{input}")
            };
            let mut m = vec![];
            if let Some(sys) = v.get("system").and_then(|x| x.as_str()) {
                m.push(Message::new("system", sys));
            }
            m.push(Message::new("user", &user));
            m.push(Message::new("assistant", out_t));
            m
        } else {
            return Err(bad(
                "expected {\"messages\": [...]} or {\"instruction\", \"input\", \"output\"}",
            ));
        };
        if messages.last().map(|m| m.role.as_str()) != Some("assistant") || messages.len() < 2 {
            return Err(bad(
                "the last message must be the assistant's answer, after at least one other",
            ));
        }
        out.push(messages);
    }
    if out.is_empty() {
        return Err(Error::Invalid("the data file has no examples".into()));
    }
    Ok(out)
}

/// Render an example as transformers does for training: the whole conversation, with the
/// loss on the tokens after the prompt (all but the last message, plus the generation prompt).
pub fn render_example(
    tok: &crate::text::Tokenizer,
    messages: &[crate::text::Message],
) -> Result<Example> {
    let text = tok.apply_chat_template(messages, false)?;
    let prompt = tok.apply_chat_template(&messages[..messages.len() - 1], true)?;
    let ids = tok.encode(&text, false)?;
    let p = tok.encode(&prompt, false)?.len();
    let labels = ids
        .iter()
        .enumerate()
        .map(|(i, &t)| if i < p { -100 } else { t as i64 })
        .collect();
    Ok(Example { ids, labels })
}
