//! Hand a fine-tuning run to an engine made for clusters: the run `hubscope finetune` was asked
//! for (model, data, LoRA/QLoRA/full, schedule) written as LLaMA-Factory's or TRL's own
//! configuration, with the sharding and GPU count the planner chose (`cluster::place`) as
//! DeepSpeed or accelerate (FSDP) files, and a README that says how to start it and where it
//! differs from hubscope's own run. Pure: a `Run` in, files out.

mod launch;
mod llamafactory;
mod readme;
mod trl;
mod yaml;

use crate::OutFile;
pub use crate::cluster::Method;
use crate::cluster::{Placement, TrainingMemory};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::lora::FineTuneSettings;
use crate::text::Message;

/// The engines a run can be handed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    LlamaFactory,
    Trl,
}

impl Framework {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "llamafactory" | "llama-factory" | "llama_factory" => Some(Self::LlamaFactory),
            "trl" => Some(Self::Trl),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::LlamaFactory => "LLaMA-Factory",
            Self::Trl => "TRL",
        }
    }
}

/// How the states are sharded over several GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    DeepSpeed,
    /// accelerate's FSDP (version 2): TRL only.
    Fsdp,
}

/// The adapter a LoRA run trains.
#[derive(Debug, Clone)]
pub struct Lora {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// PEFT's target modules, resolved for the model's family.
    pub targets: Vec<String>,
}

impl Lora {
    /// Alpha as both engines declare it (an integer), or as given where it is not one.
    fn alpha_value(&self) -> yaml::Value {
        if self.alpha.fract() == 0.0 && self.alpha.abs() < 1e15 {
            yaml::Value::Int(self.alpha as i64)
        } else {
            yaml::Value::Float(self.alpha)
        }
    }
}

/// A run to hand off.
pub struct Run<'a> {
    /// `model_name_or_path`: a Hub repo id, or a local folder.
    pub model: String,
    pub config: &'a ModelConfig,
    pub method: Method,
    /// The adapter (LoRA and QLoRA).
    pub lora: Option<Lora>,
    pub settings: &'a FineTuneSettings,
    /// The examples, each a conversation ending in the answer trained on.
    pub conversations: &'a [Vec<Message>],
    /// Tokens of the longest example (the engines' cut-off: nothing is truncated).
    pub max_length: usize,
    pub memory: TrainingMemory,
    pub placement: Placement,
    pub launcher: Launcher,
}

/// The folder that runs `run` in `framework`.
pub fn emit(run: &Run, framework: Framework) -> Result<Vec<OutFile>> {
    if run.method != Method::Full && run.lora.is_none() {
        return Err(Error::Invalid(
            "a LoRA hand-off needs the adapter's settings".into(),
        ));
    }
    let mut files = match framework {
        Framework::LlamaFactory => {
            if run.launcher == Launcher::Fsdp {
                return Err(Error::Invalid(
                    "FSDP is written for TRL (accelerate); LLaMA-Factory's hand-off shards with DeepSpeed"
                        .into(),
                ));
            }
            llamafactory::files(run)?
        }
        Framework::Trl => trl::files(run)?,
    };
    files.push(OutFile {
        name: "README.md".into(),
        bytes: readme::readme(run, framework).into_bytes(),
    });
    Ok(files)
}

/// transformers' `TrainingArguments` both engines take: logging, the batch per GPU as planned,
/// and hubscope's schedule (AdamW at a constant rate, no warm-up, no clipping) in bf16.
fn training_arguments(d: &mut yaml::Doc, run: &Run) {
    let (s, p) = (run.settings, &run.placement);
    d.set("logging_steps", 1usize)
        .set("save_strategy", "epoch")
        .set("report_to", "none")
        .comment(&format!(
            "Per GPU as planned; the global batch is {} ({} per GPU x {} GPU(s); hubscope's: {}).",
            s.batch_size * p.gpus as usize,
            s.batch_size,
            p.gpus,
            s.batch_size
        ))
        .set("per_device_train_batch_size", s.batch_size)
        .set("gradient_accumulation_steps", 1usize)
        .set("learning_rate", s.lr)
        .set("num_train_epochs", s.epochs as f64)
        .comment("hubscope's AdamW: constant learning rate, no warm-up, no gradient clipping")
        .set("lr_scheduler_type", "constant")
        .set("warmup_ratio", 0.0)
        .set("max_grad_norm", 0.0)
        .set("weight_decay", s.weight_decay)
        .set("seed", s.seed)
        .set("bf16", true);
}

/// One JSON line per example: `{"messages": [...]}` (role, content).
fn messages_jsonl(conversations: &[Vec<Message>]) -> Vec<u8> {
    let mut out = String::new();
    for c in conversations {
        out.push_str(&serde_json::json!({ "messages": c }).to_string());
        out.push('\n');
    }
    out.into_bytes()
}
