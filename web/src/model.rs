//! The model in the page: its files downloaded (or taken from Cache Storage) as bytes and
//! handed to the core's one entry (`hubscope_core::bundle`); kept once per repo, commit,
//! device and dtype for generation; generation streamed with the browser's clock.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use hubscope_core::bundle::{self, Bundle, ModelBytes, TokenizerBytes, WeightBytes};
use hubscope_core::generate::Generation;
use hubscope_core::gguf::parse_whole;
use hubscope_core::gguf_model;
use hubscope_core::hub::{RepoRef, resolve_url};
use hubscope_core::sampling::{GenerationConfig, Sampler};
use hubscope_core::text::Tokenizer;
use hubscope_core::{ComputeDtype, Model};

use crate::device::PageDevice;
use crate::error::AppError;
use crate::fetch::{FetchError, Origin, download, get};
use crate::repo::{Checkpoint, RepoView, Source};

/// A model ready in the page.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub generation: GenerationConfig,
    /// Every file came from Cache Storage.
    pub from_cache: bool,
    /// Why Cache Storage did not keep a downloaded file (a quota error), if it did not.
    pub not_kept: Option<String>,
}

/// What a kept model is: the same repo commit, device and dtype reuse it.
#[derive(Clone, PartialEq)]
struct Key {
    endpoint: String,
    repo: String,
    commit: String,
    device: PageDevice,
    dtype: ComputeDtype,
}

thread_local! {
    static LOADED: RefCell<Option<(Key, Rc<Loaded>)>> = const { RefCell::new(None) };
}

/// A small file of the repo, None if the repo lacks it.
async fn small(
    endpoint: &str,
    repo: &RepoRef,
    token: Option<&str>,
    name: &str,
) -> Result<Option<Vec<u8>>, FetchError> {
    match get(&resolve_url(endpoint, repo, name), token, None).await {
        Ok(b) => Ok(Some(b)),
        Err(FetchError::Status(404, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every file the model needs, from Cache Storage where possible; whether all came from
/// there, and why one was not kept there.
async fn fetch_files(
    src: &Source,
    view: &RepoView,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<(ModelBytes, bool, Option<String>), AppError> {
    view.runnable()?;
    let pinned = view.pinned();
    let (endpoint, token) = (view.endpoint.as_str(), src.token());
    let (config_json, headers) = match &view.checkpoint {
        Checkpoint::Runs {
            config_json,
            headers,
            ..
        } => (config_json, headers),
        Checkpoint::Gguf { file, header, .. } => {
            // One file holds it all: config and tokenizer from its header, then the weights.
            let end = header.tensors.iter().map(|t| t.offset + t.bytes).max();
            let size = header.data_offset + end.unwrap_or(0);
            let url = resolve_url(endpoint, &pinned, file);
            let (bytes, origin) =
                download(&url, token, None, &|got, _| progress(got, size), cancel).await?;
            let whole = parse_whole(file, &bytes, bytes.len() as u64)?;
            let (config, tokenizer) = gguf_model::text_files(&whole)?;
            drop(whole);
            let not_kept = match &origin {
                Origin::NotKept(why) => Some(why.clone()),
                _ => None,
            };
            let files = ModelBytes {
                config,
                generation_config: None,
                tokenizer,
                weights: WeightBytes::Gguf {
                    file: file.clone(),
                    bytes,
                    keep_blocks: false,
                },
                adapter: None,
            };
            return Ok((files, origin == Origin::Cache, not_kept));
        }
        Checkpoint::Names { .. } => {
            return Err(AppError::Model("this checkpoint does not run".into()));
        }
    };
    // tokenizer.json is megabytes: kept in Cache Storage like the weights.
    let tok_url = resolve_url(endpoint, &pinned, "tokenizer.json");
    let mut not_kept = None;
    let mut note = |o: &Origin| {
        if let Origin::NotKept(why) = o {
            not_kept.get_or_insert_with(|| why.clone());
        }
    };
    let tokenizer_json = match download(&tok_url, token, None, &|_, _| {}, cancel).await {
        Ok((b, origin)) => {
            note(&origin);
            b
        }
        Err(FetchError::Status(404, _)) => {
            return Err(AppError::Model(
                "tokenizer.json: missing in the repo".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let tokenizer = TokenizerBytes {
        tokenizer_json,
        tokenizer_config: small(endpoint, &pinned, token, "tokenizer_config.json").await?,
        chat_template_jinja: small(endpoint, &pinned, token, "chat_template.jinja").await?,
        chat_template_json: small(endpoint, &pinned, token, "chat_template.json").await?,
    };
    let generation_config = small(endpoint, &pinned, token, "generation_config.json").await?;
    let total: u64 = headers
        .iter()
        .map(|h| (h.data_start + h.data_len) as u64)
        .sum();
    let mut done = 0u64;
    let mut weights = vec![];
    let mut all_cached = true;
    for h in headers {
        let url = resolve_url(endpoint, &pinned, &h.file);
        let size = (h.data_start + h.data_len) as u64;
        let base = done;
        let (bytes, origin) = download(
            &url,
            token,
            Some(size),
            &|got, _| progress(base + got, total),
            cancel,
        )
        .await?;
        note(&origin);
        all_cached &= origin == Origin::Cache;
        done += size;
        weights.push((h.file.clone(), bytes));
    }
    let files = ModelBytes {
        config: config_json.to_vec(),
        generation_config,
        tokenizer: Some(tokenizer),
        weights: WeightBytes::Safetensors(weights),
        adapter: None,
    };
    Ok((files, all_cached, not_kept))
}

/// The core's bundle, with the browser's clock for chat templates: a model of the caller's
/// own (to train), not kept; the kept generation model is freed first.
pub async fn load_owned(
    src: &Source,
    view: &RepoView,
    device: &Device,
    dtype: ComputeDtype,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<Loaded, AppError> {
    free_loaded();
    let (files, from_cache, not_kept) = fetch_files(src, view, progress, cancel).await?;
    let Bundle {
        model,
        tokenizer,
        generation,
    } = bundle::load(files, dtype, device)?;
    let mut tokenizer =
        tokenizer.ok_or_else(|| AppError::Model("tokenizer.json: missing".into()))?;
    tokenizer.set_clock(local_now);
    Ok(Loaded {
        model,
        tokenizer,
        generation,
        from_cache,
        not_kept,
    })
}

/// The model for generation: built once per repo, commit, device and dtype; the previous
/// one is freed first.
pub async fn load(
    src: &Source,
    view: &RepoView,
    (device, kind): (&Device, PageDevice),
    dtype: ComputeDtype,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<Rc<Loaded>, AppError> {
    let key = Key {
        endpoint: view.endpoint.clone(),
        repo: view.repo.id.clone(),
        commit: view.commit.clone(),
        device: kind,
        dtype,
    };
    if let Some(l) = LOADED.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }) {
        return Ok(l);
    }
    let loaded = Rc::new(load_owned(src, view, device, dtype, progress, cancel).await?);
    LOADED.with(|l| *l.borrow_mut() = Some((key, loaded.clone())));
    Ok(loaded)
}

/// Drop the generation model (its device memory goes with it).
pub fn free_loaded() {
    LOADED.with(|l| *l.borrow_mut() = None);
}

/// Generate in the page: the browser's clock, a turn of the event loop after every token (so
/// the page repaints), text handed to `on_text` as it streams; `on_text` false stops.
pub async fn stream(
    loaded: &Loaded,
    ids: &[u32],
    generation: GenerationConfig,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Generation, AppError> {
    let sampler = Sampler::new(generation);
    let clock = || crate::fetch::now_ms() / 1000.0;
    let tick = || crate::fetch::next_tick();
    Ok(hubscope_core::generate(
        &loaded.model,
        Some(&loaded.tokenizer),
        ids,
        sampler,
        hubscope_core::generate::RunOptions {
            logprobs: 0,
            clock: &clock,
            tick: Some(&tick),
        },
        |s| on_text(s.text),
    )
    .await?)
}

/// The browser's local time, for chat templates that print today's date.
fn local_now() -> hubscope_core::chrono::NaiveDateTime {
    let d = js_sys::Date::new_0();
    hubscope_core::chrono::NaiveDate::from_ymd_opt(
        d.get_full_year() as i32,
        d.get_month() + 1,
        d.get_date(),
    )
    .and_then(|day| day.and_hms_opt(d.get_hours(), d.get_minutes(), d.get_seconds()))
    .unwrap_or_default()
}
