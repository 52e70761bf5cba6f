//! What the page and its model worker say to each other: requests (generate, train, chat
//! with the trained model, stop) and the events a request answers with (phases, text,
//! training steps, files, the end). Each message is JSON, with any file bytes beside it as
//! `Uint8Array`s (`bytes`), so both sides read one typed enum.

use hubscope_core::WeightDtype;
use hubscope_core::lora::FineTuneSettings;
use hubscope_core::prompt::Prompt;
use hubscope_core::sampling::Overrides;
use serde::{Deserialize, Serialize};
use wasm_bindgen::{JsCast, JsValue};

use crate::device::PageDevice;
use crate::error::AppError;
use crate::repo::Source;

/// A model as the worker loads it: the repo at a pinned commit, the device and dtype.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// `revision` is the commit the page's header-only read resolved.
    pub source: Source,
    pub device: PageDevice,
    pub dtype: WeightDtype,
}

/// From the page to the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Load the model (kept for the next request with the same `ModelRef`) and generate.
    Generate {
        model: ModelRef,
        prompt: Prompt,
        sampling: Overrides,
    },
    /// Load the model on the autodiff device in f32 and train a LoRA adapter; a starting
    /// adapter's `adapter_config.json` here, its weights as the message's first bytes.
    Train {
        model: ModelRef,
        data: String,
        settings: FineTuneSettings,
        init_config: Option<String>,
    },
    /// Chat (greedy) with the model the last `Train` left.
    AskTrained {
        prompt: String,
        max_new_tokens: usize,
    },
    /// Stop the request under way at its next chance.
    Stop,
    /// A fault the failure tests cause in the worker.
    Simulate(Fault),
}

/// A GPU failure the worker can be made to meet (`worker.js` causes it), for the failure tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    /// Its WebGPU devices destroyed, as a driver reset does.
    DeviceLoss,
    /// Every shader it compiles from then on is not WGSL, as a shader compiler that rejects
    /// the kernels would have it: each pipeline made from one fails validation.
    ShaderFailure,
}

/// What the worker is doing, as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    /// The repo's headers and small files.
    Opening,
    /// Weights arriving (from Cache Storage or the network) and placed on the device as they
    /// come: bytes so far of all, tensors placed of all.
    Loading {
        got: u64,
        total: u64,
        bytes_per_s: f64,
        from_cache: bool,
        placed: usize,
        tensors: usize,
    },
    /// The modules built, the first forward pass (on WebGPU: its kernels compiled).
    Prefill {
        tokens: usize,
    },
    Generating {
        tokens: usize,
        tok_s: f64,
    },
    Training {
        step: usize,
        steps: usize,
    },
}

/// How a request ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finish {
    Done,
    Stopped,
}

/// The end of a generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generated {
    pub finish: Finish,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub from_cache: bool,
    /// Why Cache Storage did not keep a downloaded file (a quota error), if it did not.
    pub not_kept: Option<String>,
}

/// A training run as it starts: what is trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingStart {
    pub trainable: u64,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
    pub longest: usize,
    pub steps: usize,
}

/// One optimizer step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub step: usize,
    pub steps: usize,
    pub epoch: usize,
    pub loss: f32,
    pub tokens: usize,
}

/// From the worker to the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// The worker is up and listening.
    Ready,
    Phase(Phase),
    Text(String),
    Training(TrainingStart),
    Step(Step),
    /// The trained adapter's files, named; their bytes beside the message, in order.
    Trained {
        names: Vec<String>,
    },
    /// A generation or a chat ended.
    Generated(Generated),
    /// A training run ended.
    TrainDone(Finish),
    Failed(AppError),
}

impl Event {
    /// Whether this event ends the request it answers.
    pub fn ends(&self) -> bool {
        matches!(
            self,
            Event::Generated(_) | Event::TrainDone(_) | Event::Failed(_)
        )
    }
}

/// A message as posted: `{json, bytes}`.
pub fn encode<T: Serialize>(msg: &T, bytes: &[&[u8]]) -> JsValue {
    let o = js_sys::Object::new();
    let json = serde_json::to_string(msg).unwrap_or_else(|e| format!("\"{e}\""));
    let _ = js_sys::Reflect::set(&o, &"json".into(), &json.into());
    let arr = js_sys::Array::new();
    for b in bytes {
        arr.push(&js_sys::Uint8Array::from(*b));
    }
    let _ = js_sys::Reflect::set(&o, &"bytes".into(), &arr);
    o.into()
}

/// A posted message back: its typed part and its bytes; `None` if it is not one of ours.
pub fn decode<T: for<'de> Deserialize<'de>>(data: &JsValue) -> Option<(T, Vec<Vec<u8>>)> {
    let json = js_sys::Reflect::get(data, &"json".into())
        .ok()?
        .as_string()?;
    let msg = serde_json::from_str(&json).ok()?;
    let bytes = js_sys::Reflect::get(data, &"bytes".into())
        .ok()
        .and_then(|b| b.dyn_into::<js_sys::Array>().ok())
        .map(|a| {
            a.iter()
                .map(|v| js_sys::Uint8Array::new(&v).to_vec())
                .collect()
        })
        .unwrap_or_default();
    Some((msg, bytes))
}
