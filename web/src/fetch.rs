//! HTTP from the page: JSON and ranged reads for headers, and weight downloads with progress,
//! kept in Cache Storage so a reload does not download again. An interrupted download is never
//! stored: the next attempt starts clean.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, Response};

pub const CACHE_NAME: &str = "hubscope-weights-v1";

/// What went wrong, in the user's terms.
#[derive(Debug, Clone)]
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

fn window() -> web_sys::Window {
    web_sys::window().expect("a window")
}

async fn send(
    url: &str,
    token: Option<&str>,
    range: Option<(u64, u64)>,
) -> Result<Response, FetchError> {
    let headers = Headers::new().map_err(|e| FetchError::Other(js_err(e)))?;
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        headers
            .set("Authorization", &format!("Bearer {t}"))
            .map_err(|e| FetchError::Other(js_err(e)))?;
    }
    if let Some((a, b)) = range {
        headers
            .set("Range", &format!("bytes={a}-{b}"))
            .map_err(|e| FetchError::Other(js_err(e)))?;
    }
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_headers(&headers);
    let req =
        Request::new_with_str_and_init(url, &init).map_err(|e| FetchError::Other(js_err(e)))?;
    let resp: Response = JsFuture::from(window().fetch_with_request(&req))
        .await
        .map_err(|e| FetchError::Network(js_err(e)))?
        .dyn_into()
        .map_err(|e| FetchError::Other(js_err(e)))?;
    if !resp.ok() {
        return Err(FetchError::Status(resp.status(), url.to_string()));
    }
    Ok(resp)
}

async fn body_bytes(resp: &Response) -> Result<Vec<u8>, FetchError> {
    let buf = JsFuture::from(
        resp.array_buffer()
            .map_err(|e| FetchError::Other(js_err(e)))?,
    )
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
    let resp = send(url, token, range).await?;
    if range.is_some() && resp.status() != 206 {
        return Err(FetchError::Other(format!(
            "{url}: the server ignored the Range request"
        )));
    }
    body_bytes(&resp).await
}

async fn open_cache() -> Option<web_sys::Cache> {
    let caches = window().caches().ok()?;
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

/// A weight file: from Cache Storage when there, else downloaded with progress
/// `(received, total)` and stored only once complete. `cancel()` true aborts.
/// Returns the bytes and where they came from.
pub async fn download(
    url: &str,
    token: Option<&str>,
    expected_size: Option<u64>,
    progress: &dyn Fn(u64, Option<u64>),
    cancel: &dyn Fn() -> bool,
) -> Result<(Vec<u8>, Origin), FetchError> {
    let cache = open_cache().await;
    if let Some(c) = &cache {
        if let Ok(hit) = JsFuture::from(c.match_with_str(url)).await {
            if let Ok(resp) = hit.dyn_into::<Response>() {
                let bytes = body_bytes(&resp).await?;
                if expected_size.is_none_or(|n| n == bytes.len() as u64) {
                    progress(bytes.len() as u64, Some(bytes.len() as u64));
                    return Ok((bytes, Origin::Cache));
                }
                // A stale or broken entry: drop it and download again.
                let _ = JsFuture::from(c.delete_with_str(url)).await;
            }
        }
    }
    let resp = send(url, token, None).await?;
    let total = resp
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .or(expected_size);
    let body = resp
        .body()
        .ok_or_else(|| FetchError::Other("empty body".into()))?;
    let reader: web_sys::ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|e| FetchError::Other(js_err(e.into())))?;
    let mut bytes: Vec<u8> = Vec::with_capacity(total.unwrap_or(0) as usize);
    loop {
        if cancel() {
            let _ = reader.cancel();
            return Err(FetchError::Other("cancelled".into()));
        }
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| FetchError::Network(js_err(e)))?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let value =
            Reflect::get(&chunk, &"value".into()).map_err(|e| FetchError::Other(js_err(e)))?;
        bytes.extend_from_slice(&Uint8Array::new(&value).to_vec());
        progress(bytes.len() as u64, total);
    }
    if let Some(n) = total {
        if bytes.len() as u64 != n {
            return Err(FetchError::Network(format!(
                "the download stopped at {} of {n} bytes",
                bytes.len()
            )));
        }
    }
    // Stored only now, complete: a reload uses it, an interrupted download never is. A refusal
    // (quota) costs the next visit a download, not this run: said, not fatal.
    let origin = match &cache {
        None => Origin::NotKept("Cache Storage is not available in this page".into()),
        Some(c) => {
            let arr = Uint8Array::from(bytes.as_slice());
            match Response::new_with_opt_buffer_source(Some(&arr)) {
                Ok(resp) => match JsFuture::from(c.put_with_str(url, &resp)).await {
                    Ok(_) => Origin::Network,
                    Err(e) => Origin::NotKept(js_err(e)),
                },
                Err(e) => Origin::NotKept(js_err(e)),
            }
        }
    };
    Ok((bytes, origin))
}

/// Milliseconds since page load.
pub fn now_ms() -> f64 {
    window().performance().map_or(0.0, |p| p.now())
}

/// A future that resolves on the next turn of the event loop.
pub fn next_tick() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        let p = js_sys::Promise::new(&mut |resolve, _| {
            let _ = window().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        });
        let _ = JsFuture::from(p).await;
    })
}
