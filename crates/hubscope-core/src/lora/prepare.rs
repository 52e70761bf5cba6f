//! One fine-tune preparation for the CLI and the page: settings checked and data lines parsed
//! (before any model file is read), rendered with the model's chat template, the trainer
//! built; then the adapter started on a loaded model. Both callers only fetch bytes, step the trainer and show progress.

use super::adapter::AdapterConfig;
use super::backward::Activations;
use super::data::{parse_jsonl, render_example};
use super::train::{AdamW, Trainer, check_schedule, start_training};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::model::Model;
use crate::text::{Message, Tokenizer};

/// What a fine-tune run is asked to do (a starting adapter's own rank, alpha, dropout and
/// targets win over these).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FineTuneSettings {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// PEFT's `target_modules`; None: every projection of the model's family.
    pub targets: Option<Vec<String>>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Keep only each decoder layer's input in the forward pass and recompute the layer in
    /// the backward pass (less memory, one more forward pass of compute).
    pub gradient_checkpointing: bool,
}

/// A run ready to start: the checked fresh-adapter settings and the trainer over the rendered
/// examples.
pub struct Prepared {
    pub fresh: AdapterConfig,
    pub trainer: Trainer,
    pub seed: u64,
    /// Tokens of the longest example: the context the planner sizes the run for.
    pub longest: usize,
}

/// Settings and data checked, before any model file is read: bad settings and bad data
/// lines (named by number) fail here.
pub struct Checked {
    fresh: AdapterConfig,
    conversations: Vec<Vec<Message>>,
    settings: FineTuneSettings,
}

/// Check the settings and parse `data` (chat or alpaca JSONL).
pub fn check(data: &str, s: &FineTuneSettings) -> Result<Checked> {
    let fresh = AdapterConfig::fresh(s.rank, s.alpha, s.dropout)?;
    check_schedule(s.batch_size, s.epochs)?;
    Ok(Checked {
        fresh,
        conversations: parse_jsonl(data)?,
        settings: s.clone(),
    })
}

impl Checked {
    /// The examples as parsed, each a conversation ending in the answer trained on.
    pub fn conversations(&self) -> &[Vec<Message>] {
        &self.conversations
    }

    /// Check the targets against the model's config, render every example with
    /// `tokenizer`'s chat template and build the trainer.
    pub fn render(self, config: &ModelConfig, tokenizer: &Tokenizer) -> Result<Prepared> {
        let s = &self.settings;
        let fresh = self.fresh.target(config, s.targets.as_deref())?;
        let examples = self
            .conversations
            .iter()
            .map(|m| render_example(tokenizer, m))
            .collect::<Result<Vec<_>>>()?;
        let longest = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let trainer = Trainer::new(
            examples,
            s.batch_size,
            s.epochs,
            AdamW::new(s.lr, s.weight_decay),
            if s.gradient_checkpointing {
                Activations::Recomputed
            } else {
                Activations::Kept
            },
        )?;
        Ok(Prepared {
            fresh,
            trainer,
            seed: s.seed,
            longest,
        })
    }
}

/// [`check`], then [`Checked::render`].
pub fn prepare(
    data: &str,
    config: &ModelConfig,
    tokenizer: &Tokenizer,
    s: &FineTuneSettings,
) -> Result<Prepared> {
    check(data, s)?.render(config, tokenizer)
}

impl Prepared {
    /// Put the adapter on `model` (loaded on an autodiff device) and make it the only trainable
    /// part: `init` (a PEFT adapter's config and weights) when given, else a fresh one.
    /// Returns the adapter's config.
    pub fn start(
        &self,
        model: &mut Model,
        init: Option<(AdapterConfig, &[u8])>,
    ) -> Result<AdapterConfig> {
        start_training(model, init, self.fresh.clone(), self.seed)
    }
}
