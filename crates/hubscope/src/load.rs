//! Model loading for the commands: a folder's files read as bytes and handed to the core's one
//! entry (`hubscope_core::bundle`), with the local clock for chat templates, an optional LoRA
//! adapter folder, and the load's freed buffers given back to the kernel.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hubscope_core::bundle::{self, AdapterBytes, TextSide};
use hubscope_core::burn::tensor::Device;
use hubscope_core::lora::AdapterConfig;
use hubscope_core::sampling::GenerationConfig;
use hubscope_core::text::Tokenizer;
use hubscope_core::{Model, ModelConfig, WeightDtype};

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;

/// A PEFT adapter folder's files as bytes (`adapter_config.json`, `adapter_model.safetensors`).
pub fn adapter_bytes(dir: &Path) -> Result<AdapterBytes> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))
    };
    Ok(AdapterBytes {
        place: dir.display().to_string(),
        config: read("adapter_config.json")?,
        weights: read("adapter_model.safetensors")?,
    })
}

/// A PEFT adapter folder, its config parsed (for `inspect --adapter` and `--init-adapter`).
pub fn read_adapter(dir: &Path) -> Result<(AdapterConfig, Vec<u8>)> {
    let a = adapter_bytes(dir)?;
    let cfg = AdapterConfig::from_json(&a.config).with_context(|| a.place.clone())?;
    Ok((cfg, a.weights))
}

/// Config, generation defaults and tokenizer (with the local clock for `strftime_now`).
pub fn text_side(folder: &ModelFolder) -> Result<TextSide> {
    let mut text = bundle::text_side(
        &folder.read("config.json")?,
        folder.read_optional("generation_config.json")?.as_deref(),
        folder.tokenizer_bytes()?.as_ref(),
    )
    .with_context(|| folder.place())?;
    if let Some(t) = text.tokenizer.as_mut() {
        t.set_clock(|| chrono::Local::now().naive_local());
    }
    Ok(text)
}

/// What the weights are loaded for: generation and training (QLoRA) may keep a GGUF file's
/// linear weights in their blocks; export needs float weights.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WeightUse {
    KeepBlocks,
    FloatWeights,
}

/// The folder's weights (single file, shards, burnpack or GGUF), and the adapter in `adapter`
/// if given, onto `device` in `dtype`.
pub fn load_model(
    folder: &ModelFolder,
    config: ModelConfig,
    dtype: WeightDtype,
    device: &Device,
    adapter: Option<&Path>,
    use_: WeightUse,
) -> Result<Model> {
    let weights = folder.weights(use_ == WeightUse::KeepBlocks)?;
    let adapter = adapter.map(adapter_bytes).transpose()?;
    let model = bundle::load_model(config, weights, adapter, dtype, device)?;
    // The file buffers are gone; give their pages back rather than keep them resident.
    crate::process::release_freed_memory();
    Ok(model)
}

/// What `generate` works with.
pub struct Loaded {
    pub model: Model,
    /// None only when the folder has no tokenizer.json and ids are given directly.
    pub tokenizer: Option<Tokenizer>,
    pub generation: GenerationConfig,
    pub load_s: f64,
}

/// A folder's model on the device of `dev`, with its tokenizer and generation defaults.
pub fn load(
    folder: &ModelFolder,
    dev: &DeviceArgs,
    adapter: Option<&Path>,
    need_tokenizer: bool,
) -> Result<Loaded> {
    let t0 = Instant::now();
    let text = text_side(folder)?;
    if text.tokenizer.is_none() && need_tokenizer {
        bail!(
            "{}: missing (hubscope needs tokenizer.json to turn text into tokens)",
            folder.path("tokenizer.json").display()
        );
    }
    let model = load_model(
        folder,
        text.config,
        dev.dtype()?,
        &dev.device()?,
        adapter,
        WeightUse::KeepBlocks,
    )?;
    Ok(Loaded {
        model,
        tokenizer: text.tokenizer,
        generation: text.generation,
        load_s: t0.elapsed().as_secs_f64(),
    })
}
