//! `hubscope serve --chat`: an OpenAI-compatible API beside the Hub API and the web app.
//! `request` reads OpenAI bodies into typed requests, `engine` runs them with continuous
//! batching on one thread that owns the models, `response` writes OpenAI's objects and
//! chunks, `routes` ties them to HTTP, `error` is OpenAI's error shape.

pub mod engine;
pub mod error;
pub mod request;
pub mod response;
pub mod routes;

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hubscope_core::sampling::GenerationConfig;
use hubscope_core::text::Tokenizer;

use crate::device::DeviceArgs;
use crate::folder::ModelFolder;
use crate::hub::{HubArgs, local_or_download};
use engine::{Engine, EngineModel};
use hubscope_core::bundle::attach_adapter;
use hubscope_core::lora::adapter::take_adapters;

/// What `--chat` serves and how.
pub struct ChatOptions {
    /// `MODEL` (a folder or a Hub repo id, served under that name) or `NAME=MODEL`.
    pub models: Vec<String>,
    /// PEFT LoRA adapters, `NAME=DIR` (for the first model) or `BASE:NAME=DIR`; a request
    /// names one as `BASE:NAME`.
    pub adapters: Vec<String>,
    pub device: DeviceArgs,
    pub hub: HubArgs,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Sequences decoded together in one batch.
    pub max_batch: usize,
    /// Requests that may wait for a place in the batch before new ones get a 429.
    pub max_queue: usize,
}

/// A served model as the HTTP side sees it (the engine holds the weights).
pub struct Served {
    pub name: String,
    /// Adapter names; request model `name:adapter` picks `adapters[i]` (engine index i + 1).
    pub adapters: Vec<String>,
    pub tokenizer: Arc<Tokenizer>,
    pub generation: GenerationConfig,
    pub max_positions: usize,
}

pub struct ChatState {
    pub models: Vec<Served>,
    pub engine: Engine,
    pub api_key: Option<String>,
    /// When the server started (`created` of `/v1/models`).
    pub created: u64,
}

/// Load every model onto the device and start the engine.
pub fn start(o: ChatOptions) -> Result<Arc<ChatState>> {
    let mut served = vec![];
    let mut engine_models = vec![];
    for spec in &o.models {
        let (name, source) = match spec.split_once('=') {
            Some((n, m)) if !n.is_empty() && !m.is_empty() => (n.to_string(), m.to_string()),
            _ => (spec.clone(), spec.clone()),
        };
        if served.iter().any(|s: &Served| s.name == name) {
            bail!("--chat: the name `{name}` is given twice");
        }
        let dir = local_or_download(&source, &o.hub)?;
        let folder = ModelFolder::open(&dir.to_string_lossy())?;
        let mut loaded = crate::load::load(&folder, &o.device, None, true)
            .with_context(|| format!("--chat {spec}"))?;
        // Adapters over this base: each attached, then taken out to be swapped in per step.
        let mut adapter_names = vec![];
        let mut adapters = vec![vec![]];
        for a in &o.adapters {
            let (target, rest) = match a.split_once('=') {
                Some((lhs, dir)) => match lhs.split_once(':') {
                    Some((base, n)) => (Some(base), (n, dir)),
                    None => (None, (lhs, dir)),
                },
                None => bail!("--adapter {a}: expected NAME=DIR or BASE:NAME=DIR"),
            };
            let ours = match target {
                Some(base) => base == name,
                None => served.is_empty(),
            };
            if !ours {
                continue;
            }
            let (adapter, dir) = rest;
            let bytes = crate::load::adapter_bytes(std::path::Path::new(dir))?;
            attach_adapter(&mut loaded.model, bytes)
                .with_context(|| format!("--adapter {a}: does not fit `{name}`"))?;
            adapters.push(take_adapters(&mut loaded.model));
            adapter_names.push(adapter.to_string());
            eprintln!("adapter `{name}:{adapter}`: {dir}");
        }
        let tokenizer = Arc::new(loaded.tokenizer.context("a tokenizer is required")?);
        eprintln!(
            "chat model `{name}`: {} on {} in {} ({:.1} s)",
            folder.dir.display(),
            o.device.device,
            o.device.dtype,
            loaded.load_s
        );
        served.push(Served {
            name,
            adapters: adapter_names,
            tokenizer: tokenizer.clone(),
            generation: loaded.generation,
            max_positions: loaded.model.config.max_position_embeddings,
        });
        engine_models.push(EngineModel {
            model: loaded.model,
            tokenizer,
            adapters,
        });
    }
    for a in &o.adapters {
        let base = a
            .split_once('=')
            .and_then(|(l, _)| l.split_once(':'))
            .map(|(b, _)| b);
        if let Some(b) = base {
            if !served.iter().any(|s| s.name == b) {
                bail!("--adapter {a}: no --chat model is named `{b}`");
            }
        }
    }
    let engine = Engine::start(engine_models, o.max_batch, o.max_queue)?;
    Ok(Arc::new(ChatState {
        models: served,
        engine,
        api_key: o.api_key,
        created: unix_now().as_secs(),
    }))
}

/// Time since the Unix epoch (`created` fields; the seed of a request that gives none).
pub fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
