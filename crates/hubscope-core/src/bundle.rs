//! The one entry from a model's files (as bytes) to a model ready to run: config, generation
//! config, tokenizer (with the tokenizer-EOS fallback), weights (safetensors files or shards,
//! burnpack or GGUF) and an optional LoRA adapter. The binary reads the files from a folder, the
//! page from the Hub; both call this.

use burn::tensor::Device;

use crate::config::ModelConfig;
use crate::dtype::{ComputeDtype, WeightDtype};
use crate::error::Result;
use crate::lora::{AdapterConfig, attach};
use crate::model::Model;
use crate::sampling::GenerationConfig;
use crate::text::{Tokenizer, TokenizerFiles};

/// The tokenizer's files, owned (see [`TokenizerFiles`]).
#[derive(Debug, Clone, Default)]
pub struct TokenizerBytes {
    pub tokenizer_json: Vec<u8>,
    pub tokenizer_config: Option<Vec<u8>>,
    pub chat_template_jinja: Option<Vec<u8>>,
    pub chat_template_json: Option<Vec<u8>>,
}

impl TokenizerBytes {
    pub fn files(&self) -> TokenizerFiles<'_> {
        TokenizerFiles {
            tokenizer_json: &self.tokenizer_json,
            tokenizer_config: self.tokenizer_config.as_deref(),
            chat_template_jinja: self.chat_template_jinja.as_deref(),
            chat_template_json: self.chat_template_json.as_deref(),
        }
    }
}

/// A checkpoint's weights as bytes.
pub enum WeightBytes {
    /// `model.safetensors`, or every shard the index names: (file name, bytes).
    Safetensors(Vec<(String, Vec<u8>)>),
    /// A burnpack file (`model.bpk`).
    Burnpack(Vec<u8>),
    /// A GGUF file, all its bytes; `keep_blocks`: linear weights may stay in their ggml blocks
    /// (generation on the CPU), false where float weights are needed (export, training).
    Gguf {
        file: String,
        bytes: Vec<u8>,
        keep_blocks: bool,
    },
}

/// A PEFT adapter folder's two files; `place` names where they came from, for errors.
pub struct AdapterBytes {
    pub place: String,
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
}

/// Everything but the weights: what the model is, how it generates, how text becomes ids.
pub struct TextSide {
    pub config: ModelConfig,
    /// None when there is no `tokenizer.json` (ids can still be given directly).
    pub tokenizer: Option<Tokenizer>,
    /// `generation_config.json` over transformers' defaults; without any EOS id there, the
    /// tokenizer's `eos_token`.
    pub generation: GenerationConfig,
}

/// `config.json`, `generation_config.json` and the tokenizer files → [`TextSide`]. Cheap: the
/// fine-tune preparation renders its data with it before any weights are read.
pub fn text_side(
    config: &[u8],
    generation_config: Option<&[u8]>,
    tokenizer: Option<&TokenizerBytes>,
) -> Result<TextSide> {
    let config = ModelConfig::from_json(config)?;
    let generation = GenerationConfig::from_model(&config, generation_config)?;
    let tokenizer = tokenizer
        .map(|t| Tokenizer::from_files(t.files()))
        .transpose()?;
    let generation = generation.with_tokenizer_eos(tokenizer.as_ref().and_then(|t| t.eos_token_id));
    Ok(TextSide {
        config,
        tokenizer,
        generation,
    })
}

/// The weights (and an adapter, attached) onto `device` in `dtype`. The weight bytes are
/// freed before this returns.
pub fn load_model(
    config: ModelConfig,
    weights: WeightBytes,
    adapter: Option<AdapterBytes>,
    dtype: impl Into<WeightDtype>,
    device: &Device,
) -> Result<Model> {
    let dtype = dtype.into();
    let mut model = match weights {
        WeightBytes::Safetensors(files) => {
            let views: Vec<(String, &[u8])> = files
                .iter()
                .map(|(n, b)| (n.clone(), b.as_slice()))
                .collect();
            Model::from_safetensors(config, &views, dtype, device)?
        }
        WeightBytes::Burnpack(bytes) => Model::from_burnpack(config, bytes, dtype, device)?,
        WeightBytes::Gguf {
            file,
            bytes,
            keep_blocks,
        } => Model::from_gguf(config, &file, &bytes, dtype, device, keep_blocks)?,
    };
    if let Some(a) = adapter {
        attach_adapter(&mut model, a)?;
    }
    Ok(model)
}

/// Attach a PEFT adapter's files to a loaded model; errors name where the files came from.
pub fn attach_adapter(model: &mut Model, a: AdapterBytes) -> Result<()> {
    AdapterConfig::from_json(&a.config)
        .and_then(|cfg| attach(model, &cfg, &a.weights))
        .map(|_| ())
        .map_err(|e| e.within(a.place))
}

/// All of a model's files as bytes.
pub struct ModelBytes {
    pub config: Vec<u8>,
    pub generation_config: Option<Vec<u8>>,
    pub tokenizer: Option<TokenizerBytes>,
    pub weights: WeightBytes,
    pub adapter: Option<AdapterBytes>,
}

/// A model ready to generate: the weights on their device, the tokenizer, the defaults.
pub struct Bundle {
    pub model: Model,
    pub tokenizer: Option<Tokenizer>,
    pub generation: GenerationConfig,
}

/// [`text_side`], then [`load_model`].
pub fn load(files: ModelBytes, dtype: ComputeDtype, device: &Device) -> Result<Bundle> {
    let text = text_side(
        &files.config,
        files.generation_config.as_deref(),
        files.tokenizer.as_ref(),
    )?;
    let model = load_model(text.config, files.weights, files.adapter, dtype, device)?;
    Ok(Bundle {
        model,
        tokenizer: text.tokenizer,
        generation: text.generation,
    })
}
