//! The model in the worker: the repo read header-only (the page's pinned commit), the small
//! files (config, tokenizer, generation defaults), then the weights streamed from Cache
//! Storage or the network into the core's [`Feed`] — each tensor converted and placed on the
//! device as its bytes complete, so memory holds the model and one tensor in flight, never a
//! file. Kept once per model reference for generation.

use std::cell::RefCell;
use std::rc::Rc;

use hubscope_core::bundle::{TextSide, TokenizerBytes, text_side};
use hubscope_core::feed::Feed;
use hubscope_core::gguf::parse_whole;
use hubscope_core::gguf_model;
use hubscope_core::hub::{RepoRef, resolve_url};
use hubscope_core::sampling::GenerationConfig;
use hubscope_core::text::Tokenizer;
use hubscope_core::{Model, WeightDtype};

use super::{post, stopped};
use crate::device::burn_device;
use crate::error::AppError;
use crate::fetch::{FetchError, Origin, get, next_tick, now_ms, open};
use crate::protocol::{Event, ModelRef, Phase};
use crate::repo::{Checkpoint, open_repo};

/// A model ready in the worker.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub generation: GenerationConfig,
    /// Every weight file came from Cache Storage.
    pub from_cache: bool,
    /// Why Cache Storage did not keep a downloaded file (a quota error), if it did not.
    pub not_kept: Option<String>,
}

thread_local! {
    static KEPT: RefCell<Option<(ModelRef, Rc<Loaded>)>> = const { RefCell::new(None) };
}

/// The kept model if it is `r`, else `r` loaded (the previous one freed first) and kept.
pub async fn kept(r: &ModelRef) -> Result<Rc<Loaded>, AppError> {
    if let Some(l) = KEPT.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|(key, _)| key == r)
            .map(|(_, l)| l.clone())
    }) {
        return Ok(l);
    }
    let loaded = Rc::new(load(r, false).await?);
    KEPT.with(|k| *k.borrow_mut() = Some((r.clone(), loaded.clone())));
    Ok(loaded)
}

/// Drop the kept model (its device memory goes with it).
pub fn free_kept() {
    KEPT.with(|k| *k.borrow_mut() = None);
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

/// A whole file through Cache Storage (tokenizer.json is megabytes: kept like the weights).
async fn whole(url: &str, token: Option<&str>) -> Result<(Vec<u8>, Origin), FetchError> {
    let mut body = open(url, token, None).await?;
    let mut out = Vec::with_capacity(body.total.unwrap_or(0) as usize);
    let mut chunk = vec![];
    while body.next(&mut chunk).await? {
        out.extend_from_slice(&chunk);
    }
    Ok((out, body.finish().await?))
}

/// How the weights are coming along, told to the page at most every 200 ms.
struct Progress {
    done: u64,
    total: u64,
    t0: f64,
    last: f64,
    from_cache: bool,
}

impl Progress {
    /// Whether it told (at most every 200 ms).
    fn tell(&mut self, got: u64, feed: &Feed, force: bool) -> bool {
        let now = now_ms();
        if !force && now - self.last < 200.0 {
            return false;
        }
        self.last = now;
        let (placed, tensors) = feed.progress();
        let got = self.done + got;
        post(
            &Event::Phase(Phase::Loading {
                got,
                total: self.total,
                bytes_per_s: got as f64 / ((now - self.t0) / 1000.0).max(1e-3),
                from_cache: self.from_cache,
                placed,
                tensors,
            }),
            &[],
        );
        true
    }
}

/// Where a weight file's bytes go: the feed, or first (a GGUF file) the header, read whole
/// from the stream (its vocabulary is summarised in the header-only read), then the feed that
/// `build` makes from it.
enum Target {
    Feed(Feed),
    Header { need: u64, prefix: Vec<u8> },
}

type Build<'a> = dyn Fn(&[u8]) -> Result<Feed, AppError> + 'a;

impl Target {
    fn take(&mut self, file: &str, chunk: &[u8], build: &Build) -> Result<(), AppError> {
        match self {
            Target::Feed(f) => Ok(f.take(file, chunk)?),
            Target::Header { need, prefix } => {
                prefix.extend_from_slice(chunk);
                if (prefix.len() as u64) < *need {
                    return Ok(());
                }
                let mut feed = build(prefix)?;
                feed.take(file, prefix)?;
                *self = Target::Feed(feed);
                Ok(())
            }
        }
    }

    fn feed(self, file: &str) -> Result<Feed, AppError> {
        match self {
            Target::Feed(f) => Ok(f),
            Target::Header { prefix, .. } => Err(AppError::Model(format!(
                "{file}: the file ends at byte {}, inside its header",
                prefix.len()
            ))),
        }
    }
}

/// One weight file streamed into `target`; where it came from.
async fn stream(
    target: &mut Target,
    build: &Build<'_>,
    url: &str,
    token: Option<&str>,
    (file, size): (&str, u64),
    progress: &mut Progress,
) -> Result<Origin, AppError> {
    let mut body = open(url, token, Some(size)).await?;
    progress.from_cache = body.from_cache;
    let mut chunk = vec![];
    loop {
        if stopped() {
            body.cancel().await;
            return Err(AppError::Stopped);
        }
        match body.next(&mut chunk).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                body.cancel().await;
                return Err(e.into());
            }
        }
        if let Err(e) = target.take(file, &chunk, build) {
            body.cancel().await;
            return Err(e);
        }
        if let Target::Feed(feed) = &*target {
            if progress.tell(body.got, feed, false) {
                // A turn of the event loop, where a Stop from the page is read (chunks
                // already in the stream resolve without one).
                next_tick().await;
            }
        }
    }
    let got = body.got;
    let origin = body.finish().await?;
    if let Target::Feed(feed) = target {
        feed.end_of(file)?;
        progress.done += got;
        progress.tell(0, feed, true);
    }
    Ok(origin)
}

/// The model `r` names, loaded on its device (its autodiff form with `train`).
pub async fn load(r: &ModelRef, train: bool) -> Result<Loaded, AppError> {
    free_kept();
    post(&Event::Phase(Phase::Opening), &[]);
    let src = &r.source;
    let view = open_repo(src).await?;
    view.runnable()?;
    let device = burn_device(r.device).await?;
    let device = if train { device.autodiff() } else { device };
    let dtype: WeightDtype = r.dtype;
    let (endpoint, token) = (view.endpoint.as_str(), src.token());
    let pinned = view.pinned();
    // A GGUF file's text side comes with its header, from the stream.
    let gguf_text: RefCell<Option<TextSide>> = RefCell::new(None);
    let (text, mut target, files) = match &view.checkpoint {
        Checkpoint::Runs {
            config_json,
            headers,
            ..
        } => {
            let tok_url = resolve_url(endpoint, &pinned, "tokenizer.json");
            let tokenizer_json = match whole(&tok_url, token).await {
                Ok((b, _)) => b,
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
            let generation = small(endpoint, &pinned, token, "generation_config.json").await?;
            let text = text_side(config_json, generation.as_deref(), Some(&tokenizer))?;
            let feed = Feed::safetensors(text.config.clone(), headers, dtype, &device)?;
            let files: Vec<(String, u64)> = headers
                .iter()
                .map(|h| (h.file.clone(), (h.data_start + h.data_len) as u64))
                .collect();
            (Some(text), Target::Feed(feed), files)
        }
        Checkpoint::Gguf { file, header, .. } => {
            let end = header.tensors.iter().map(|t| t.offset + t.bytes).max();
            let size = header.data_offset + end.unwrap_or(0);
            let target = Target::Header {
                need: header.data_offset,
                prefix: vec![],
            };
            (None, target, vec![(file.clone(), size)])
        }
        Checkpoint::Names { .. } => {
            return Err(AppError::Model("this checkpoint does not run".into()));
        }
    };
    // For a GGUF file: the whole header (vocabulary and merges included) → config and
    // tokenizer, then its feed; linear weights stay in their blocks where the CPU kernels read
    // them.
    let build = |prefix: &[u8]| -> Result<Feed, AppError> {
        let (file, size) = &files[0];
        let whole = parse_whole(file, prefix, *size)?;
        let (config, tokenizer) = gguf_model::text_files(&whole)?;
        let text = text_side(&config, None, tokenizer.as_ref())?;
        let feed = Feed::gguf(text.config.clone(), file, &whole, dtype, &device, !train)?;
        *gguf_text.borrow_mut() = Some(text);
        Ok(feed)
    };
    let mut progress = Progress {
        done: 0,
        total: files.iter().map(|(_, s)| s).sum(),
        t0: now_ms(),
        last: 0.0,
        from_cache: false,
    };
    let (mut from_cache, mut not_kept) = (true, None);
    for (file, size) in &files {
        let url = resolve_url(endpoint, &pinned, file);
        let origin = stream(
            &mut target,
            &build,
            &url,
            token,
            (file, *size),
            &mut progress,
        )
        .await?;
        from_cache &= origin == Origin::Cache;
        if let Origin::NotKept(why) = origin {
            not_kept.get_or_insert(why);
        }
    }
    let feed = target.feed(&files[0].0)?;
    let model = feed.finish()?;
    let TextSide {
        tokenizer,
        generation,
        ..
    } = match text {
        Some(t) => t,
        None => gguf_text
            .take()
            .ok_or_else(|| AppError::Model("GGUF: no header read".into()))?,
    };
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

/// The local time, for chat templates that print today's date.
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
