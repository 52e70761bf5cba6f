//! HTTP from the page or its worker (whichever global scope the code runs in): JSON and
//! ranged reads for headers, and weight files read as a stream of chunks — from Cache Storage
//! where a complete copy is there, else from the network, written into Cache Storage chunk by
//! chunk as they are read (so neither WebAssembly nor JavaScript memory ever holds the file).
//! Only a complete download is kept: an interrupted or stopped one is aborted in the cache too.

use js_sys::{Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, Request, RequestInit, Response, ResponseInit,
    WritableStreamDefaultWriter,
};

pub const CACHE_NAME: &str = "hubscope-weights-v1";

/// What went wrong, in the user's terms.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum FetchError {
    Status(u16, String),
    Network(String),
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s, url) => write!(f, "HTTP {s}: {url}"),
            FetchError::Network(m) => write!(f, "network error: {m}"),
            FetchError::Other(m) => write!(f, "{m}"),
        }
    }
}

pub fn js_err(v: JsValue) -> String {
    // Error objects stringify to "{}" as JSON; String(e) gives "TypeError: network error".
    if let Some(s) = v.as_string() {
        return s;
    }
    match v.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.to_string()),
        None => format!("{v:?}"),
    }
}

fn other(e: JsValue) -> FetchError {
    FetchError::Other(js_err(e))
}

/// The global scope: the page's window or the worker's scope.
enum Scope {
    Window(web_sys::Window),
    Worker(web_sys::WorkerGlobalScope),
}

fn scope() -> Scope {
    match web_sys::window() {
        Some(w) => Scope::Window(w),
        None => Scope::Worker(js_sys::global().unchecked_into()),
    }
}

impl Scope {
    fn fetch(&self, req: &Request) -> Promise {
        match self {
            Scope::Window(w) => w.fetch_with_request(req),
            Scope::Worker(w) => w.fetch_with_request(req),
        }
    }
    fn caches(&self) -> Option<web_sys::CacheStorage> {
        match self {
            Scope::Window(w) => w.caches().ok(),
            Scope::Worker(w) => w.caches().ok(),
        }
    }
    fn set_timeout(&self, f: &Function, ms: i32) {
        let _ = match self {
            Scope::Window(w) => w.set_timeout_with_callback_and_timeout_and_arguments_0(f, ms),
            Scope::Worker(w) => w.set_timeout_with_callback_and_timeout_and_arguments_0(f, ms),
        };
    }
    fn now_ms(&self) -> f64 {
        match self {
            Scope::Window(w) => w.performance().map_or(0.0, |p| p.now()),
            Scope::Worker(w) => w.performance().map_or(0.0, |p| p.now()),
        }
    }
}

async fn send(
    url: &str,
    token: Option<&str>,
    range: Option<(u64, u64)>,
    abort: Option<&AbortController>,
) -> Result<Response, FetchError> {
    let headers = Headers::new().map_err(other)?;
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        headers
            .set("Authorization", &format!("Bearer {t}"))
            .map_err(other)?;
    }
    if let Some((a, b)) = range {
        headers
            .set("Range", &format!("bytes={a}-{b}"))
            .map_err(other)?;
    }
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    if let Some(a) = abort {
        init.set_signal(Some(&a.signal()));
    }
    let req = Request::new_with_str_and_init(url, &init).map_err(other)?;
    let resp: Response = JsFuture::from(scope().fetch(&req))
        .await
        .map_err(|e| FetchError::Network(js_err(e)))?
        .dyn_into()
        .map_err(other)?;
    if !resp.ok() {
        return Err(FetchError::Status(resp.status(), url.to_string()));
    }
    Ok(resp)
}

async fn body_bytes(resp: &Response) -> Result<Vec<u8>, FetchError> {
    let buf = JsFuture::from(resp.array_buffer().map_err(other)?)
        .await
        .map_err(|e| FetchError::Network(js_err(e)))?;
    Ok(Uint8Array::new(&buf).to_vec())
}

/// GET a small file (or a byte range of one).
pub async fn get(
    url: &str,
    token: Option<&str>,
    range: Option<(u64, u64)>,
) -> Result<Vec<u8>, FetchError> {
    let resp = send(url, token, range, None).await?;
    if range.is_some() && resp.status() != 206 {
        return Err(FetchError::Other(format!(
            "{url}: the server ignored the Range request"
        )));
    }
    body_bytes(&resp).await
}

async fn open_cache() -> Option<web_sys::Cache> {
    let caches = scope().caches()?;
    JsFuture::from(caches.open(CACHE_NAME))
        .await
        .ok()?
        .dyn_into()
        .ok()
}

/// Where a downloaded file came from, and whether Cache Storage kept it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Cache,
    Network,
    /// Downloaded, but Cache Storage refused to keep it (a quota error, storage off): why.
    NotKept(String),
}

/// The copy being written into Cache Storage as the download is read.
struct Keeping {
    writer: WritableStreamDefaultWriter,
    put: Promise,
}

/// A file being read chunk by chunk.
pub struct Body {
    url: String,
    reader: web_sys::ReadableStreamDefaultReader,
    abort: Option<AbortController>,
    pub from_cache: bool,
    /// Its size, where known (the header-only read, or Content-Length).
    pub total: Option<u64>,
    pub got: u64,
    keeping: Option<Keeping>,
    /// Why it cannot be kept in Cache Storage, known before the end.
    not_kept: Option<String>,
}

/// Open a weight file: its complete copy in Cache Storage, else the network (its chunks
/// written into Cache Storage as they are read).
pub async fn open(url: &str, token: Option<&str>, size: Option<u64>) -> Result<Body, FetchError> {
    let cache = open_cache().await;
    if let Some(c) = &cache {
        if let Ok(hit) = JsFuture::from(c.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<Response>() {
                let stored = resp
                    .headers()
                    .get("Content-Length")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse::<u64>().ok());
                if size.is_none() || stored == size {
                    if let Some(body) = resp.body() {
                        return Ok(Body {
                            url: url.to_string(),
                            reader: body.get_reader().unchecked_into(),
                            abort: None,
                            from_cache: true,
                            total: stored,
                            got: 0,
                            keeping: None,
                            not_kept: None,
                        });
                    }
                }
                // A stale or broken entry: drop it and download again.
                let _ = JsFuture::from(c.delete_with_str(url)).await;
            }
        }
    }
    let abort = AbortController::new().ok();
    let resp = send(url, token, None, abort.as_ref()).await?;
    let total = resp
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .or(size);
    let body = resp
        .body()
        .ok_or_else(|| FetchError::Other(format!("{url}: empty body")))?;
    let (keeping, not_kept) = match &cache {
        None => (
            None,
            Some("Cache Storage is not available in this page".to_string()),
        ),
        Some(c) => match keep(c, url, total) {
            Ok(k) => (Some(k), None),
            Err(e) => (None, Some(js_err(e))),
        },
    };
    Ok(Body {
        url: url.to_string(),
        reader: body.get_reader().unchecked_into(),
        abort,
        from_cache: false,
        total,
        got: 0,
        keeping,
        not_kept,
    })
}

/// A cache entry for `url` whose body is written as the download is read.
fn keep(c: &web_sys::Cache, url: &str, total: Option<u64>) -> Result<Keeping, JsValue> {
    let pipe = web_sys::TransformStream::new()?;
    let headers = Headers::new()?;
    if let Some(n) = total {
        headers.set("Content-Length", &n.to_string())?;
    }
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let resp = Response::new_with_opt_readable_stream_and_init(Some(&pipe.readable()), &init)?;
    let put = c.put_with_str(url, &resp);
    let writer = pipe.writable().get_writer()?;
    Ok(Keeping { writer, put })
}

impl Body {
    /// The next chunk into `buf` (replacing what it held); false at the end.
    pub async fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, FetchError> {
        let chunk = JsFuture::from(self.reader.read())
            .await
            .map_err(|e| FetchError::Network(js_err(e)))?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Ok(false);
        }
        let value: Uint8Array = Reflect::get(&chunk, &"value".into())
            .map_err(other)?
            .unchecked_into();
        if let Some(k) = &self.keeping {
            // Waits while the cache's side is behind (its queue is full), so the copy never
            // piles up in memory.
            match JsFuture::from(k.writer.ready()).await {
                Ok(_) => {
                    let _ = k.writer.write_with_chunk(&value);
                }
                Err(e) => {
                    // The cache gave up (a quota error): its own reason, from `put`.
                    if let Some(k) = self.keeping.take() {
                        let why = JsFuture::from(k.put).await.err().unwrap_or(e);
                        self.not_kept = Some(js_err(why));
                    }
                }
            }
        }
        buf.resize(value.length() as usize, 0);
        value.copy_to(buf);
        self.got += buf.len() as u64;
        Ok(true)
    }

    /// After the last chunk: the size checked, and whether Cache Storage kept the file.
    pub async fn finish(mut self) -> Result<Origin, FetchError> {
        if let Some(n) = self.total.filter(|&n| n != self.got) {
            let msg = format!("the download stopped at {} of {n} bytes", self.got);
            self.cancel().await;
            if self.from_cache {
                // A cut copy in the cache: dropped, so the next try downloads it.
                if let Some(c) = open_cache().await {
                    let _ = JsFuture::from(c.delete_with_str(&self.url)).await;
                }
            }
            return Err(FetchError::Network(msg));
        }
        if self.from_cache {
            return Ok(Origin::Cache);
        }
        if let Some(why) = self.not_kept.take() {
            return Ok(Origin::NotKept(why));
        }
        let Some(k) = self.keeping.take() else {
            return Ok(Origin::NotKept("not kept".into()));
        };
        let _ = JsFuture::from(k.writer.close()).await;
        // A refusal (quota) costs the next visit a download, not this run: said, not fatal.
        Ok(match JsFuture::from(k.put).await {
            Ok(_) => Origin::Network,
            Err(e) => Origin::NotKept(js_err(e)),
        })
    }

    /// Stop reading: the request aborted, the cache's copy abandoned.
    pub async fn cancel(&mut self) {
        if let Some(k) = self.keeping.take() {
            let _ = JsFuture::from(k.writer.abort()).await;
            let _ = JsFuture::from(k.put).await;
        }
        let _ = self.reader.cancel();
        if let Some(a) = &self.abort {
            a.abort();
        }
    }
}

/// Milliseconds since the page (or worker) started.
pub fn now_ms() -> f64 {
    scope().now_ms()
}

/// A future that resolves after `ms` milliseconds (0: the next turn of the event loop).
pub fn sleep(ms: i32) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async move {
        let p = Promise::new(&mut |resolve, _| scope().set_timeout(&resolve, ms));
        let _ = JsFuture::from(p).await;
    })
}

/// A future that resolves on the next turn of the event loop: a message to itself through a
/// `MessageChannel` (a task, so pending messages and events run first, without the 4 ms that
/// browsers add to nested zero timeouts).
pub fn next_tick() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async move {
        let Ok(channel) = web_sys::MessageChannel::new() else {
            return sleep(0).await;
        };
        let p = Promise::new(&mut |resolve, _| {
            channel.port1().set_onmessage(Some(&resolve));
        });
        let _ = channel.port2().post_message(&JsValue::NULL);
        let _ = JsFuture::from(p).await;
        channel.port1().set_onmessage(None);
    })
}
