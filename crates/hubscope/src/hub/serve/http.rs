//! The HTTP side of `hubscope serve`: the Hub's resolve (ETag, commit, linked size, ranges,
//! CDN redirects), repo info and tree APIs, the web app's static files, CORS, and the token
//! check of a gated repo. Paths are decoded segment by segment; unsafe ones are refused.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::faults::Faults;
use super::index::{FileEntry, RepoEntry, Rev};

pub struct AppState {
    pub repos: BTreeMap<String, RepoEntry>,
    /// The CDN origin LFS files redirect to (`--cdn-port`), and its files by sha256.
    pub cdn: Option<String>,
    pub blobs: HashMap<String, FileEntry>,
    /// Requests the CDN origin got, and how many of them carried an `Authorization` header.
    pub cdn_requests: AtomicU64,
    pub cdn_authorized: AtomicU64,
    pub web: Option<PathBuf>,
    pub token: Option<String>,
    pub stats: Option<Mutex<BTreeMap<String, u64>>>,
    pub requests: AtomicU64,
    pub faults: Faults,
}

fn cors(h: &mut HeaderMap) {
    h.insert("Access-Control-Allow-Origin", HeaderValue::from_static("*"));
    h.insert(
        "Access-Control-Expose-Headers",
        HeaderValue::from_static(
            "ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Content-Length, Content-Range, Accept-Ranges, X-Error-Code, X-Error-Message",
        ),
    );
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"error": message}))).into_response();
    r.headers_mut().insert(
        "X-Error-Code",
        HeaderValue::from_str(code).unwrap_or(HeaderValue::from_static("Error")),
    );
    r.headers_mut().insert(
        "X-Error-Message",
        HeaderValue::from_str(message).unwrap_or(HeaderValue::from_static("error")),
    );
    r
}

/// Split a request path into decoded segments; None if any is unsafe.
fn segments(path: &str) -> Option<Vec<String>> {
    let mut out = vec![];
    for raw in path.trim_start_matches('/').split('/') {
        let dec = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?
            .into_owned();
        if dec.is_empty() || dec == "." || dec == ".." || dec.contains(['/', '\\', '\0']) {
            return None;
        }
        out.push(dec);
    }
    Some(out)
}

impl AppState {
    /// The repo id at the start of `segs` (two segments if such a repo exists, else one).
    fn split_repo<'a>(&self, segs: &'a [String]) -> Option<(String, &'a [String])> {
        if segs.len() >= 2 {
            let two = format!("{}/{}", segs[0], segs[1]);
            if self.repos.contains_key(&two) {
                return Some((two, &segs[2..]));
            }
        }
        if !segs.is_empty() && self.repos.contains_key(&segs[0]) {
            return Some((segs[0].clone(), &segs[1..]));
        }
        None
    }

    fn rev(&self, id: &str, rev: &str) -> Result<Arc<Rev>, Response> {
        let repo = self.repos.get(id).ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "RepoNotFound",
                "Repository not found",
            )
        })?;
        repo.revs.get(rev).cloned().ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "RevisionNotFound",
                &format!("Invalid rev id: {rev}"),
            )
        })
    }

    fn authorized(&self, h: &HeaderMap) -> bool {
        match &self.token {
            None => true,
            Some(t) => {
                h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {t}"))
            }
        }
    }
}

fn info_json(id: &str, rev: &Rev) -> Value {
    let siblings: Vec<Value> = rev
        .files
        .values()
        .map(|f| {
            let mut s = json!({"rfilename": f.path, "size": f.size, "blobId": f.etag});
            if f.lfs {
                s["lfs"] = json!({"sha256": f.etag, "size": f.size, "pointerSize": 134});
            }
            s
        })
        .collect();
    json!({"_id": rev.commit, "id": id, "modelId": id, "sha": rev.commit, "private": false, "gated": false,
        "disabled": false, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"})
}

fn tree_json(rev: &Rev) -> Value {
    let mut dirs = std::collections::BTreeSet::new();
    let mut items: Vec<Value> = vec![];
    for f in rev.files.values() {
        let parts: Vec<&str> = f.path.split('/').collect();
        for i in 1..parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
        let mut v = json!({"type": "file", "oid": f.etag, "size": f.size, "path": f.path});
        if f.lfs {
            v["lfs"] = json!({"oid": f.etag, "size": f.size, "pointerSize": 134});
        }
        items.push(v);
    }
    for d in dirs {
        items.push(json!({"type": "directory", "oid": "", "size": 0, "path": d}));
    }
    Value::Array(items)
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → inclusive range; Err(()) if unsatisfiable.
fn parse_range(v: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multiple ranges: serve the whole file
    }
    let (a, b) = spec.split_once('-')?;
    let r = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || size == 0 {
                return Some(Err(()));
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().ok()?, size.saturating_sub(1)),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.saturating_sub(1)),
        ),
    };
    if r.0 >= size || r.0 > r.1 {
        return Some(Err(()));
    }
    Some(Ok(r))
}

async fn resolve(
    state: Arc<AppState>,
    method: Method,
    headers: HeaderMap,
    id: String,
    rest: &[String],
) -> Response {
    let (rev_name, file) = (&rest[0], rest[1..].join("/"));
    let rev = match state.rev(&id, rev_name) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(f) = rev.files.get(&file) else {
        return error(
            StatusCode::NOT_FOUND,
            "EntryNotFound",
            &format!("{file} does not exist on \"{rev_name}\""),
        );
    };
    let mut h = HeaderMap::new();
    let q = |s: &str| HeaderValue::from_str(&format!("\"{s}\"")).expect("hex");
    h.insert(header::ETAG, q(&f.etag));
    h.insert(
        "X-Repo-Commit",
        HeaderValue::from_str(&rev.commit).expect("hex"),
    );
    if f.lfs {
        h.insert("X-Linked-Etag", q(&f.etag));
        h.insert("X-Linked-Size", HeaderValue::from(f.size));
        if let Some(cdn) = &state.cdn {
            // As huggingface.co does: the bytes come from another origin, by content hash.
            let loc = format!(
                "{cdn}/cdn/{}?file={}",
                f.etag,
                hubscope_core::hub::encode_component(&file)
            );
            h.insert(
                header::LOCATION,
                HeaderValue::from_str(&loc).expect("ascii"),
            );
            return (StatusCode::FOUND, h).into_response();
        }
    }
    let key = format!("{id}/{file}");
    send_file(&state, &method, &headers, f, h, key).await
}

/// A file's bytes (the whole file or the requested range), with the test faults applied.
async fn send_file(
    state: &Arc<AppState>,
    method: &Method,
    headers: &HeaderMap,
    f: &FileEntry,
    mut h: HeaderMap,
    key: String,
) -> Response {
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let (status, start, len) = match headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_range(v, f.size))
    {
        Some(Ok((a, b))) => {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes {a}-{b}/{}", f.size)).expect("ascii"),
            );
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        Some(Err(())) => {
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", f.size)).expect("ascii"),
            );
            return (StatusCode::RANGE_NOT_SATISFIABLE, h).into_response();
        }
        None => (StatusCode::OK, 0, f.size),
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if *method == Method::HEAD {
        return (status, h).into_response();
    }
    // Test faults on file bodies.
    if let Some((status, retry_after)) = state.faults.status() {
        let mut r = error(status, "Fault", "injected fault");
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return r;
    }
    let mut faults = state.faults.body(len, f.lfs);
    let mut file_h = match tokio::fs::File::open(&f.full).await {
        Ok(x) => x,
        Err(_) => return error(StatusCode::NOT_FOUND, "EntryNotFound", "file vanished"),
    };
    if file_h.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Error", "seek failed");
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file_h.take(len), 64 * 1024);
    let st = state.clone();
    let body = stream.map(move |chunk| {
        let chunk = faults.apply(chunk?)?;
        if let Some(s) = &st.stats {
            *s.lock().expect("lock").entry(key.clone()).or_default() += chunk.len() as u64;
        }
        Ok::<_, std::io::Error>(chunk)
    });
    (status, h, Body::from_stream(body)).into_response()
}

async fn api(state: Arc<AppState>, segs: &[String]) -> Response {
    let Some((id, rest)) = state.split_repo(segs) else {
        return error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        );
    };
    let rev_name = match rest {
        [] => "main".to_string(),
        [kind, rev, ..] if kind == "revision" || kind == "tree" => rev.clone(),
        _ => return error(StatusCode::NOT_FOUND, "EntryNotFound", "unknown API path"),
    };
    let rev = match state.rev(&id, &rev_name) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if rest.first().is_some_and(|k| k == "tree") {
        return axum::Json(tree_json(&rev)).into_response();
    }
    axum::Json(info_json(&id, &rev)).into_response()
}

async fn static_file(state: &AppState, segs: &[String]) -> Response {
    let Some(web) = &state.web else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "not found");
    };
    let mut p = web.clone();
    for s in segs {
        p.push(s);
    }
    if segs.is_empty() || p.is_dir() {
        p.push("index.html");
    }
    let (Ok(real), Ok(root)) = (std::fs::canonicalize(&p), std::fs::canonicalize(web)) else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "not found");
    };
    if !real.starts_with(&root) {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "not found");
    }
    let Ok(bytes) = tokio::fs::read(&real).await else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "not found");
    };
    let ctype = match real.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, ctype)], bytes).into_response()
}

/// The second origin of `--cdn-port`: `/cdn/<sha256>` serves a blob (ranges, faults and
/// byte counts as on the main origin), no token needed, as a signed CDN URL.
pub async fn cdn(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.cdn_requests.fetch_add(1, Ordering::Relaxed);
    if req.headers().contains_key(header::AUTHORIZATION) {
        state.cdn_authorized.fetch_add(1, Ordering::Relaxed);
    }
    let method = req.method().clone();
    let segs = segments(req.uri().path()).unwrap_or_default();
    let mut resp = match (segs.as_slice(), &method) {
        ([c, etag], &Method::GET | &Method::HEAD) if c == "cdn" => match state.blobs.get(etag) {
            Some(f) => {
                let mut h = HeaderMap::new();
                h.insert(
                    header::ETAG,
                    HeaderValue::from_str(&format!("\"{etag}\"")).expect("hex"),
                );
                let key = format!("cdn/{etag}");
                send_file(&state, &method, req.headers(), f, h, key).await
            }
            None => error(StatusCode::NOT_FOUND, "EntryNotFound", "no such blob"),
        },
        _ => error(StatusCode::NOT_FOUND, "EntryNotFound", "not found"),
    };
    cors(resp.headers_mut());
    resp
}

pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let path = req.uri().path().to_string();
    let mut resp = if method == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            "Access-Control-Allow-Methods",
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        h.insert(
            "Access-Control-Allow-Headers",
            HeaderValue::from_static("Authorization, Range, Content-Type, Accept-Encoding"),
        );
        h.insert("Access-Control-Max-Age", HeaderValue::from_static("86400"));
        r
    } else if method != Method::GET && method != Method::HEAD {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    } else if path == "/_hubscope/stats" && state.stats.is_some() {
        let s = state
            .stats
            .as_ref()
            .expect("stats")
            .lock()
            .expect("lock")
            .clone();
        axum::Json(
            json!({"bytes_sent": s, "requests": state.requests.load(Ordering::Relaxed),
            "cdn_requests": state.cdn_requests.load(Ordering::Relaxed),
            "cdn_requests_with_authorization": state.cdn_authorized.load(Ordering::Relaxed)}),
        )
        .into_response()
    } else {
        match segments(&path) {
            None if path == "/" => static_file(&state, &[]).await,
            None => error(StatusCode::BAD_REQUEST, "BadRequest", "invalid path"),
            Some(segs) => {
                let needs_auth =
                    segs.first().is_some_and(|s| s == "api") || segs.iter().any(|s| s == "resolve");
                if needs_auth && !state.authorized(&headers) {
                    error(
                        StatusCode::UNAUTHORIZED,
                        "GatedRepo",
                        "Access to this repo is restricted: pass a token",
                    )
                } else if segs.len() > 2 && segs[0] == "api" && segs[1] == "models" {
                    api(state.clone(), &segs[2..]).await
                } else if let Some((id, rest)) = state
                    .split_repo(&segs)
                    .filter(|(_, r)| r.len() >= 3 && r[0] == "resolve")
                {
                    resolve(state.clone(), method, headers, id, &rest[1..]).await
                } else if segs.iter().any(|s| s == "resolve") {
                    error(
                        StatusCode::NOT_FOUND,
                        "RepoNotFound",
                        "Repository not found",
                    )
                } else {
                    static_file(&state, &segs).await
                }
            }
        }
    };
    cors(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_paths() {
        assert_eq!(parse_range("bytes=0-7", 100), Some(Ok((0, 7))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert!(segments("/a/../b").is_none());
        assert!(segments("/a/%2e%2e/b").is_none());
        assert!(segments("/a/%2Fetc").is_none());
        assert_eq!(segments("/org/x%20y").unwrap(), vec!["org", "x y"]);
    }
}
