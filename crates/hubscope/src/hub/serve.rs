//! `hubscope serve`: a Hub-compatible HTTP server for the subset that hubscope,
//! huggingface_hub and hf-hub use (resolve with ETag/commit/range headers, repo info, tree),
//! over model folders and the local HF cache, plus the web app. Never serves outside its roots.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::cache::cache_dir;

#[derive(Args)]
pub struct ServeArgs {
    /// Model folders to serve: DIR holding org/name/ folders (or name/ folders), or PREFIX=DIR to
    /// serve DIR/name as PREFIX/name. Repeatable.
    #[arg(long)]
    pub models: Vec<String>,
    /// Also serve the repos of the local Hugging Face cache.
    #[arg(long)]
    pub hf_cache: bool,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Serve this folder (the built web app) at `/`.
    #[arg(long)]
    pub web: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Answer file GETs and HEADs of LFS files with a 302 to a second origin on this port that
    /// serves the bytes (as huggingface.co redirects to its CDN), for testing clients.
    #[arg(long)]
    pub cdn_port: Option<u16>,
    /// Require `Authorization: Bearer TOKEN` for file and API requests (like a gated repo).
    #[arg(long)]
    pub require_token: Option<String>,
    /// Test only: expose byte counters at /_hubscope/stats.
    #[arg(long, hide = true)]
    pub stats: bool,
    /// Test only: cut the connection after this many body bytes (first N file GETs, see --fault-times).
    #[arg(long, hide = true)]
    pub fault_cut_after: Option<u64>,
    /// Test only: answer the first file GETs with these statuses, e.g. 500,429.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub fault_status: Vec<u16>,
    /// Test only: Retry-After seconds sent with a fault status 429.
    #[arg(long, hide = true, default_value_t = 1)]
    pub fault_retry_after: u64,
    /// Test only: flip a byte in the bodies of LFS files.
    #[arg(long, hide = true)]
    pub fault_corrupt: bool,
    /// Test only: how many file GETs the cut applies to (0 = all).
    #[arg(long, hide = true, default_value_t = 1)]
    pub fault_times: usize,
    /// Test only: throttle file bodies to this many bytes per second.
    #[arg(long, hide = true)]
    pub fault_rate: Option<u64>,
}

#[derive(Debug, Clone)]
struct FileEntry {
    path: String,
    full: PathBuf,
    size: u64,
    etag: String,
    lfs: bool,
}

#[derive(Debug, Clone)]
struct Rev {
    commit: String,
    files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Default)]
struct RepoEntry {
    /// Revision name or commit -> the revision.
    revs: HashMap<String, Arc<Rev>>,
}

struct Faults {
    cut_after: Option<u64>,
    cut_left: AtomicUsize,
    statuses: Mutex<Vec<u16>>,
    retry_after: u64,
    corrupt: bool,
    rate: Option<u64>,
}

struct AppState {
    repos: BTreeMap<String, RepoEntry>,
    /// The CDN origin LFS files redirect to (`--cdn-port`), and its files by sha256.
    cdn: Option<String>,
    blobs: HashMap<String, FileEntry>,
    /// Requests the CDN origin got, and how many of them carried an `Authorization` header.
    cdn_requests: AtomicU64,
    cdn_authorized: AtomicU64,
    web: Option<PathBuf>,
    token: Option<String>,
    stats: Option<Mutex<BTreeMap<String, u64>>>,
    requests: AtomicU64,
    faults: Faults,
}

fn is_lfs(path: &str, size: u64) -> bool {
    let ext = path.rsplit('.').next().unwrap_or("");
    size > 10 * 1024 * 1024
        || [
            "safetensors",
            "bin",
            "bpk",
            "gguf",
            "pt",
            "pth",
            "onnx",
            "msgpack",
            "h5",
            "ckpt",
            "npz",
        ]
        .contains(&ext)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest of a file's bytes after `prefix`, read in 1 MiB pieces.
fn digest<D: Digest>(f: &mut std::fs::File, prefix: &[u8]) -> Result<String> {
    let mut h = D::new();
    h.update(prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 for LFS files (what the Hub's X-Linked-Etag carries), the git blob id otherwise.
fn etag_of(full: &Path, lfs: bool) -> Result<String> {
    let mut f = std::fs::File::open(full)?;
    let size = f.metadata()?.len();
    if lfs {
        digest::<Sha256>(&mut f, b"")
    } else {
        digest::<Sha1>(&mut f, format!("blob {size}\0").as_bytes())
    }
}

/// Every regular file under `root` whose real path stays inside `root` (symlinks pointing out
/// are skipped), as repo-relative `/` paths.
fn walk(root: &Path, real_root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // .git, .cache
        }
        let Ok(real) = std::fs::canonicalize(&p) else {
            continue;
        };
        if !real.starts_with(real_root) {
            continue;
        }
        if real.is_dir() {
            walk(root, real_root, &p, out)?;
        } else if real.is_file() {
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, p));
        }
    }
    Ok(())
}

fn folder_rev(dir: &Path) -> Result<Rev> {
    let real_root = std::fs::canonicalize(dir)?;
    let mut found = vec![];
    walk(dir, &real_root, dir, &mut found)?;
    let mut files = BTreeMap::new();
    for (rel, full) in found {
        let size = std::fs::metadata(&full)?.len();
        let lfs = is_lfs(&rel, size);
        let etag =
            etag_of(&full, lfs).with_context(|| format!("{}: cannot hash", full.display()))?;
        files.insert(
            rel.clone(),
            FileEntry {
                path: rel,
                full,
                size,
                etag,
                lfs,
            },
        );
    }
    // A stable commit id for the folder's content.
    let mut h = Sha1::new();
    for f in files.values() {
        h.update(format!("{}\0{}\n", f.path, f.etag).as_bytes());
    }
    Ok(Rev {
        commit: hex(&h.finalize()),
        files,
    })
}

fn add_folder_repo(repos: &mut BTreeMap<String, RepoEntry>, id: String, dir: &Path) -> Result<()> {
    let rev = Arc::new(folder_rev(dir)?);
    let entry = repos.entry(id).or_default();
    entry.revs.insert("main".into(), rev.clone());
    entry.revs.insert(rev.commit.clone(), rev);
    Ok(())
}

fn scan_models(spec: &str, repos: &mut BTreeMap<String, RepoEntry>) -> Result<()> {
    let (prefix, dir) = match spec.split_once('=') {
        Some((p, d)) => (Some(p.to_string()), PathBuf::from(d)),
        None => (None, PathBuf::from(spec)),
    };
    if !dir.is_dir() {
        bail!("--models {spec}: {} is not a folder", dir.display());
    }
    let is_model =
        |p: &Path| p.join("config.json").is_file() || p.join("model.safetensors").is_file();
    for e in std::fs::read_dir(&dir)?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !p.is_dir() || name.starts_with('.') {
            continue;
        }
        match &prefix {
            Some(pre) => add_folder_repo(repos, format!("{pre}/{name}"), &p)?,
            None if is_model(&p) => add_folder_repo(repos, name, &p)?,
            None => {
                for e2 in std::fs::read_dir(&p)?.flatten() {
                    let q = e2.path();
                    if q.is_dir() && is_model(&q) {
                        add_folder_repo(
                            repos,
                            format!("{name}/{}", e2.file_name().to_string_lossy()),
                            &q,
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Repos of the HF cache: blob names are the ETags, refs name the revisions.
fn scan_cache(cache: &Path, repos: &mut BTreeMap<String, RepoEntry>) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("models--") else {
            continue;
        };
        let id = id.replace("--", "/");
        let root = e.path();
        let real_root = std::fs::canonicalize(&root)?;
        let mut by_commit = HashMap::new();
        for s in std::fs::read_dir(root.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let commit = s.file_name().to_string_lossy().into_owned();
            let mut found = vec![];
            walk(&s.path(), &real_root, &s.path(), &mut found)?;
            let mut files = BTreeMap::new();
            for (rel, full) in found {
                let real = std::fs::canonicalize(&full)?;
                let etag = real
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let size = std::fs::metadata(&real)?.len();
                let lfs = hubscope_core::hub::is_sha256(&etag);
                files.insert(
                    rel.clone(),
                    FileEntry {
                        path: rel,
                        full,
                        size,
                        etag,
                        lfs,
                    },
                );
            }
            by_commit.insert(commit.clone(), Arc::new(Rev { commit, files }));
        }
        let entry = repos.entry(id).or_default();
        for r in std::fs::read_dir(root.join("refs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(c) = std::fs::read_to_string(r.path()) {
                if let Some(rev) = by_commit.get(c.trim()) {
                    entry
                        .revs
                        .insert(r.file_name().to_string_lossy().into_owned(), rev.clone());
                }
            }
        }
        for (c, rev) in by_commit {
            entry.revs.insert(c, rev);
        }
    }
    Ok(())
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
    let fault_status = {
        let mut s = state.faults.statuses.lock().expect("lock");
        if s.is_empty() {
            None
        } else {
            Some(s.remove(0))
        }
    };
    if let Some(code) = fault_status {
        let mut r = error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Fault",
            "injected fault",
        );
        if code == 429 {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(state.faults.retry_after),
            );
        }
        return r;
    }
    // A cut applies to bodies longer than it (smaller files pass untouched and uncounted).
    let cut = state.faults.cut_after.filter(|&n| {
        len > n
            && state
                .faults
                .cut_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    if n == 0 { None } else { Some(n - 1) }
                })
                .is_ok()
    });
    let mut file_h = match tokio::fs::File::open(&f.full).await {
        Ok(x) => x,
        Err(_) => return error(StatusCode::NOT_FOUND, "EntryNotFound", "file vanished"),
    };
    if file_h.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Error", "seek failed");
    }
    let corrupt = state.faults.corrupt && f.lfs;
    let rate = state.faults.rate;
    let stream = tokio_util::io::ReaderStream::with_capacity(file_h.take(len), 64 * 1024);
    let st = state.clone();
    let mut sent = 0u64;
    let body = stream.map(move |chunk| {
        let mut chunk = chunk?;
        if let Some(limit) = cut {
            if sent >= limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected cut",
                ));
            }
            if sent + chunk.len() as u64 > limit {
                chunk.truncate((limit - sent) as usize);
            }
        }
        if corrupt && sent == 0 && !chunk.is_empty() {
            let mut v = chunk.to_vec();
            let i = v.len() - 1;
            v[i] ^= 0xff;
            chunk = v.into();
        }
        if let Some(r) = rate {
            std::thread::sleep(std::time::Duration::from_secs_f64(
                chunk.len() as f64 / r as f64,
            ));
        }
        sent += chunk.len() as u64;
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
async fn cdn(State(state): State<Arc<AppState>>, req: Request) -> Response {
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

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
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

pub fn run(a: ServeArgs) -> Result<()> {
    let mut repos = BTreeMap::new();
    for m in &a.models {
        scan_models(m, &mut repos)?;
    }
    if a.hf_cache {
        scan_cache(&cache_dir(a.cache_dir.as_deref()), &mut repos)?;
    }
    if let Some(w) = &a.web {
        if !w.join("index.html").is_file() {
            bail!(
                "--web {}: no index.html there (build the app first)",
                w.display()
            );
        }
    }
    let n = repos.len();
    let blobs: HashMap<String, FileEntry> = repos
        .values()
        .flat_map(|r| r.revs.values())
        .flat_map(|rev| rev.files.values())
        .filter(|f| f.lfs)
        .map(|f| (f.etag.clone(), f.clone()))
        .collect();
    let cdn_addr: Option<SocketAddr> = match a.cdn_port {
        Some(p) => Some(
            format!("{}:{p}", a.host)
                .parse()
                .with_context(|| format!("--host {} --cdn-port {p}", a.host))?,
        ),
        None => None,
    };
    let state = Arc::new(AppState {
        cdn: cdn_addr.map(|c| format!("http://{c}")),
        blobs,
        cdn_requests: AtomicU64::new(0),
        cdn_authorized: AtomicU64::new(0),
        repos,
        web: a.web.clone(),
        token: a.require_token.clone(),
        stats: a.stats.then(|| Mutex::new(BTreeMap::new())),
        requests: AtomicU64::new(0),
        faults: Faults {
            cut_after: a.fault_cut_after,
            cut_left: AtomicUsize::new(if a.fault_times == 0 {
                usize::MAX
            } else {
                a.fault_times
            }),
            statuses: Mutex::new(a.fault_status.clone()),
            retry_after: a.fault_retry_after,
            corrupt: a.fault_corrupt,
            rate: a.fault_rate,
        },
    });
    let addr: SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("--host {} --port {}", a.host, a.port))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if let Some(c) = cdn_addr {
            let cdn_listener = tokio::net::TcpListener::bind(c)
                .await
                .with_context(|| format!("--cdn-port: cannot listen on {c}"))?;
            let cdn_app = axum::Router::new().fallback(cdn).with_state(state.clone());
            tokio::spawn(async move { axum::serve(cdn_listener, cdn_app).await });
        }
        let app = axum::Router::new().fallback(handle).with_state(state);
        // The first line says where; tests read it (with --port 0 the OS picks the port).
        println!("serving {n} repos on http://{local}");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app).await.context("server stopped")?;
        Ok::<(), anyhow::Error>(())
    })
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
