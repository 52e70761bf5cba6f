//! The page's model work: the Hub (through `hubscope_core::hub`), headers for structure and
//! memory, the device (WebGPU when the browser has an adapter, else CPU in wasm), loading the
//! weights, and generation with the same core as the native binary.

use std::cell::RefCell;
use std::rc::Rc;

use burn::tensor::Device;
use hubscope_core::hub::{RepoReader, RepoRef, info_url, read_repo_headers, resolve_url};
use hubscope_core::lora::AdapterConfig;
use hubscope_core::structure::model_tree;
use hubscope_core::weights::{ComputeDtype, FileHeader};
use hubscope_core::{Model, ModelConfig};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::fetch::{FetchError, download, get, get_json};

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub endpoint: String,
    pub repo: String,
    pub revision: String,
    pub token: String,
}

impl Source {
    fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }
}

/// A repo read header-only: config, file list, safetensors headers.
#[derive(Clone)]
pub struct RepoView {
    pub repo: RepoRef,
    pub commit: String,
    pub config: ModelConfig,
    pub headers: Vec<FileHeader>,
    pub fetched_bytes: u64,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone)]
pub enum AppError {
    Fetch(FetchError),
    Model(String),
    TooBig(String),
    NoWebGpu,
}

impl From<FetchError> for AppError {
    fn from(e: FetchError) -> Self {
        AppError::Fetch(e)
    }
}

impl From<hubscope_core::Error> for AppError {
    fn from(e: hubscope_core::Error) -> Self {
        AppError::Model(e.to_string())
    }
}

fn sizes(info: &Value) -> Vec<(String, Option<u64>)> {
    info["siblings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let name = s["rfilename"].as_str()?.to_string();
                    let size = s["lfs"]["size"].as_u64().or(s["size"].as_u64());
                    Some((name, size))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The page's `fetch` as the core's reader of one pinned repo.
struct PageReader<'a> {
    endpoint: &'a str,
    repo: &'a RepoRef,
    token: Option<&'a str>,
}

impl RepoReader for PageReader<'_> {
    type Error = AppError;
    async fn get(&self, file: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, AppError> {
        Ok(get(
            &resolve_url(self.endpoint, self.repo, file),
            self.token,
            range,
        )
        .await?)
    }
}

/// Repo info, then the core's header-only read (config.json, per shard two Range reads).
pub async fn open_repo(src: &Source) -> Result<RepoView, AppError> {
    let repo = RepoRef::parse(
        src.repo.trim(),
        Some(src.revision.trim()).filter(|r| !r.is_empty()),
    )?;
    let endpoint = src.endpoint.trim();
    let info = get_json(&info_url(endpoint, &repo), src.token()).await?;
    let commit = info["sha"].as_str().unwrap_or(&repo.revision).to_string();
    let pinned = RepoRef {
        id: repo.id.clone(),
        revision: commit.clone(),
    };
    let files = sizes(&info);
    let r = read_repo_headers(
        &PageReader {
            endpoint,
            repo: &pinned,
            token: src.token(),
        },
        &repo.id,
        &files,
    )
    .await?;
    let config = ModelConfig::from_json(&r.config)?;
    let (headers, fetched, stored) = (r.headers, r.fetched_bytes, r.stored_bytes);
    // Fails here, before any download, for a checkpoint whose tensors do not fit the config.
    hubscope_core::weights::plan_load(&config, &headers)?;
    Ok(RepoView {
        repo,
        commit,
        config,
        headers,
        fetched_bytes: fetched,
        stored_bytes: stored,
    })
}

/// The WebGPU adapter's limits, if the browser has one: (maxBufferSize,
/// maxStorageBufferBindingSize, shader-f16).
pub async fn adapter_limits() -> Option<(f64, f64, bool)> {
    use js_sys::{Function, Promise, Reflect};
    let nav = web_sys::window()?.navigator();
    let gpu = Reflect::get(&nav, &"gpu".into()).ok()?;
    if gpu.is_undefined() || gpu.is_null() {
        return None;
    }
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let limits = Reflect::get(&adapter, &"limits".into()).ok()?;
    let num = |k: &str| {
        Reflect::get(&limits, &k.into())
            .ok()
            .and_then(|v| v.as_f64())
    };
    let features = Reflect::get(&adapter, &"features".into()).ok()?;
    let has: Function = Reflect::get(&features, &"has".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let f16 = has
        .call1(&features, &"shader-f16".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some((
        num("maxBufferSize")?,
        num("maxStorageBufferBindingSize")?,
        f16,
    ))
}

thread_local! {
    static WEBGPU: RefCell<Option<Device>> = const { RefCell::new(None) };
    static LOADED: RefCell<Option<(String, Rc<Loaded>)>> = const { RefCell::new(None) };
}

/// Burn's WebGPU device (initialized once per page; cubecl requests the adapter's limits and
/// features, shader-f16 included when offered).
pub async fn webgpu_device() -> Result<Device, String> {
    if let Some(d) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(d);
    }
    let d = Device::wgpu_options()
        .graphics_api(burn::tensor::wgpu::WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("{e:?}"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some(d.clone()));
    Ok(d)
}

pub struct Loaded {
    pub model: Model,
    pub tokenizer: hubscope_core::text::Tokenizer,
    pub generation: hubscope_core::sampling::GenerationConfig,
    pub from_cache: bool,
}

/// The device for a run: WebGPU when chosen, or (auto) when the browser has an adapter, else
/// burn's CPU backend in WebAssembly. Refuses, before any download, a tensor the adapter
/// cannot bind or weights too big for wasm memory. Returns the device and its label.
pub async fn pick_device(
    choice: &str,
    limits: Option<(f64, f64, bool)>,
    config: &ModelConfig,
    dtype: ComputeDtype,
) -> Result<(Device, &'static str), AppError> {
    let use_gpu = match choice {
        "cpu" => false,
        "webgpu" => true,
        _ => limits.is_some(),
    };
    let bytes_per = if dtype == ComputeDtype::F32 { 4 } else { 2 };
    let tree = model_tree(config);
    let human = |b: f64| hubscope_core::units::human_bytes(b as u64);
    if use_gpu {
        let (_, binding, _) = limits.ok_or(AppError::NoWebGpu)?;
        for p in tree.all_params() {
            let b = (p.numel() * bytes_per) as f64;
            if p.tied_to.is_none() && b > binding {
                return Err(AppError::TooBig(format!(
                    "{} {:?} is {} in {}, the adapter binds at most {}",
                    p.path,
                    p.shape,
                    human(b),
                    dtype.name(),
                    human(binding)
                )));
            }
        }
        let device = webgpu_device().await.map_err(AppError::Model)?;
        return Ok((device, "WebGPU"));
    }
    let weights = (tree.num_params() * bytes_per) as f64;
    if weights > 1.5e9 {
        return Err(AppError::TooBig(format!(
            "{} of weights in {}; WebAssembly memory holds about 2 GB",
            human(weights),
            dtype.name()
        )));
    }
    Ok((Device::flex(), "CPU (wasm)"))
}

/// Everything a model needs from its repo, from Cache Storage where possible.
struct Files {
    weights: Vec<(String, Vec<u8>)>,
    tokenizer_json: Vec<u8>,
    tokenizer_config: Option<Vec<u8>>,
    chat_template_jinja: Option<Vec<u8>>,
    chat_template_json: Option<Vec<u8>>,
    generation_config: Option<Vec<u8>>,
    all_cached: bool,
}

async fn fetch_files(
    src: &Source,
    view: &RepoView,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<Files, AppError> {
    let pinned = RepoRef {
        id: view.repo.id.clone(),
        revision: view.commit.clone(),
    };
    let endpoint = src.endpoint.trim();
    // tokenizer.json is megabytes: kept in Cache Storage like the weights.
    let tok_url = resolve_url(endpoint, &pinned, "tokenizer.json");
    let tokenizer_json = match download(&tok_url, src.token(), None, &|_, _| {}, cancel).await {
        Ok((b, _)) => b,
        Err(FetchError::Status(404, _)) => {
            return Err(AppError::Model(
                "tokenizer.json: missing in the repo".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let tokenizer_config = small(endpoint, &pinned, src.token(), "tokenizer_config.json").await?;
    let chat_template_jinja = small(endpoint, &pinned, src.token(), "chat_template.jinja").await?;
    let chat_template_json = small(endpoint, &pinned, src.token(), "chat_template.json").await?;
    let generation_config = small(endpoint, &pinned, src.token(), "generation_config.json").await?;
    let total: u64 = view
        .headers
        .iter()
        .map(|h| (h.data_start + h.data_len) as u64)
        .sum();
    let mut done = 0u64;
    let mut weights = vec![];
    let mut all_cached = true;
    for h in &view.headers {
        let url = resolve_url(endpoint, &pinned, &h.file);
        let size = (h.data_start + h.data_len) as u64;
        let base = done;
        let (bytes, cached) = download(
            &url,
            src.token(),
            Some(size),
            &|got, _| progress(base + got, total),
            cancel,
        )
        .await?;
        all_cached &= cached;
        done += size;
        weights.push((h.file.clone(), bytes));
    }
    Ok(Files {
        weights,
        tokenizer_json,
        tokenizer_config,
        chat_template_jinja,
        chat_template_json,
        generation_config,
        all_cached,
    })
}

fn build(
    view: &RepoView,
    files: Files,
    dtype: ComputeDtype,
    device: &Device,
) -> Result<Loaded, AppError> {
    let shards: Vec<(String, &[u8])> = files
        .weights
        .iter()
        .map(|(n, b)| (n.clone(), b.as_slice()))
        .collect();
    let model = Model::from_safetensors(view.config.clone(), &shards, dtype, device)?;
    let mut tokenizer =
        hubscope_core::text::Tokenizer::from_files(hubscope_core::text::TokenizerFiles {
            tokenizer_json: &files.tokenizer_json,
            tokenizer_config: files.tokenizer_config.as_deref(),
            chat_template_jinja: files.chat_template_jinja.as_deref(),
            chat_template_json: files.chat_template_json.as_deref(),
        })?;
    tokenizer.set_clock(local_now);
    let generation = hubscope_core::sampling::GenerationConfig::from_model(
        &view.config,
        files.generation_config.as_deref(),
    )?
    .with_tokenizer_eos(tokenizer.eos_token_id);
    Ok(Loaded {
        model,
        tokenizer,
        generation,
        from_cache: files.all_cached,
    })
}

/// The model for generation: downloaded (or taken from Cache Storage) and built once per
/// repo, commit, device and dtype; the previous one is freed first.
pub async fn load(
    src: &Source,
    view: &RepoView,
    device: &Device,
    device_label: &str,
    dtype: ComputeDtype,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<Rc<Loaded>, AppError> {
    let key = format!(
        "{}|{}|{}|{}|{}",
        src.endpoint,
        view.repo.id,
        view.commit,
        device_label,
        dtype.name()
    );
    if let Some(l) = LOADED.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }) {
        return Ok(l);
    }
    free_loaded();
    let files = fetch_files(src, view, progress, cancel).await?;
    let loaded = Rc::new(build(view, files, dtype, device)?);
    LOADED.with(|l| *l.borrow_mut() = Some((key, loaded.clone())));
    Ok(loaded)
}

/// A model of the caller's own (to train): not shared, not kept.
pub async fn load_owned(
    src: &Source,
    view: &RepoView,
    device: &Device,
    dtype: ComputeDtype,
    progress: &dyn Fn(u64, u64),
    cancel: &dyn Fn() -> bool,
) -> Result<Loaded, AppError> {
    free_loaded();
    let files = fetch_files(src, view, progress, cancel).await?;
    build(view, files, dtype, device)
}

/// Drop the generation model (its device memory goes with it).
pub fn free_loaded() {
    LOADED.with(|l| *l.borrow_mut() = None);
}

/// A PEFT adapter from a Hub repo (optionally a subfolder of it): `adapter_config.json` and
/// `adapter_model.safetensors`, as `PeftModel.from_pretrained(model, repo, subfolder=…)` reads.
pub async fn fetch_adapter(
    src: &Source,
    repo: &str,
    subfolder: &str,
) -> Result<(AdapterConfig, Vec<u8>), AppError> {
    let repo = RepoRef::parse(repo.trim(), None)?;
    let sub = subfolder.trim().trim_matches('/');
    let path = |f: &str| {
        if sub.is_empty() {
            f.to_string()
        } else {
            format!("{sub}/{f}")
        }
    };
    let endpoint = src.endpoint.trim();
    let cfg = get(
        &resolve_url(endpoint, &repo, &path("adapter_config.json")),
        src.token(),
        None,
    )
    .await?;
    let cfg = AdapterConfig::from_json(&cfg)?;
    let weights = get(
        &resolve_url(endpoint, &repo, &path("adapter_model.safetensors")),
        src.token(),
        None,
    )
    .await?;
    Ok((cfg, weights))
}

/// Generate in the page: the browser's clock, a turn of the event loop after every token (so
/// the page repaints), text handed to `on_text` as it streams; `on_text` false stops.
pub async fn stream(
    loaded: &Loaded,
    ids: &[u32],
    generation: hubscope_core::sampling::GenerationConfig,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<hubscope_core::generate::Generation, AppError> {
    let mut sampler = hubscope_core::sampling::Sampler::new(generation);
    let clock = || crate::fetch::now_ms() / 1000.0;
    let tick = || crate::fetch::next_tick();
    Ok(hubscope_core::generate(
        &loaded.model,
        Some(&loaded.tokenizer),
        ids,
        &mut sampler,
        hubscope_core::generate::RunOptions {
            logprobs: 0,
            clock: &clock,
            tick: Some(&tick),
        },
        |s| on_text(s.text),
    )
    .await?)
}

/// A small file of the repo, None if the repo lacks it.
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
