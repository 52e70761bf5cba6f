//! LoRA: PEFT's adapter format (`adapter`), training (`train`), training data (`data`) and the
//! one preparation of a fine-tune run that the CLI and the page share (`prepare`).

pub mod adapter;
pub mod backward;
pub mod data;
pub mod prepare;
pub mod train;

pub use adapter::{
    AdapterConfig, adapter_files, adapter_safetensors, adapter_tensors, attach, freeze,
    init_adapter, make_trainable, merge, peft_key, quantized_base, trainable_params,
};
pub use backward::Activations;
pub use data::{parse_jsonl, render_example};
pub use prepare::{Checked, FineTuneSettings, Prepared, check, prepare};
pub use train::{
    AdamW, Example, StepReport, Trainer, causal_lm_loss, causal_lm_loss_sum, start_training,
    train_batch, train_step,
};
