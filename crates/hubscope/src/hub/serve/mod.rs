//! `hubscope serve` as a library: a Hub-compatible HTTP server for the subset that hubscope,
//! huggingface_hub and hf-hub use, over model folders and the local HF cache, plus the web
//! app. `index` finds the repos, `http` answers requests, `faults` injects test failures.

pub mod faults;
pub mod http;
pub mod index;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use faults::{FaultSettings, Faults};
use http::AppState;
use index::{FileEntry, scan_cache, scan_models};

/// What to serve and how.
pub struct ServeOptions {
    /// `DIR` (holding `org/name/` or `name/` folders) or `PREFIX=DIR`.
    pub models: Vec<String>,
    /// The HF cache folder to serve too, if any.
    pub hf_cache: Option<PathBuf>,
    /// The built web app, served at `/`.
    pub web: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    /// A second origin LFS files redirect to (as huggingface.co redirects to its CDN).
    pub cdn_port: Option<u16>,
    pub require_token: Option<String>,
    /// Test only: byte counters at `/_hubscope/stats`.
    pub stats: bool,
    pub faults: FaultSettings,
    /// The OpenAI-compatible API (`--chat`), already loaded.
    pub chat: Option<Arc<crate::chat::ChatState>>,
}

/// Index the repos and serve until the process ends; the first line printed says where.
pub fn run(o: ServeOptions) -> Result<()> {
    let mut repos = BTreeMap::new();
    for m in &o.models {
        scan_models(m, &mut repos)?;
    }
    if let Some(cache) = &o.hf_cache {
        scan_cache(cache, &mut repos)?;
    }
    if let Some(w) = &o.web {
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
    let cdn_addr: Option<SocketAddr> = match o.cdn_port {
        Some(p) => Some(
            format!("{}:{p}", o.host)
                .parse()
                .with_context(|| format!("--host {} --cdn-port {p}", o.host))?,
        ),
        None => None,
    };
    let state = Arc::new(AppState {
        cdn: cdn_addr.map(|c| format!("http://{c}")),
        blobs,
        cdn_requests: AtomicU64::new(0),
        cdn_authorized: AtomicU64::new(0),
        repos,
        web: o.web.clone(),
        token: o.require_token.clone(),
        stats: o.stats.then(|| Mutex::new(BTreeMap::new())),
        requests: AtomicU64::new(0),
        faults: Faults::new(&o.faults),
    });
    let addr: SocketAddr = format!("{}:{}", o.host, o.port)
        .parse()
        .with_context(|| format!("--host {} --port {}", o.host, o.port))?;
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
            let cdn_app = axum::Router::new()
                .fallback(http::cdn)
                .with_state(state.clone());
            tokio::spawn(async move { axum::serve(cdn_listener, cdn_app).await });
        }
        let mut app = axum::Router::new();
        if let Some(chat) = o.chat {
            app = app.merge(crate::chat::routes::router(chat));
        }
        let app = app.fallback(http::handle).with_state(state);
        // The first line says where; tests read it (with --port 0 the OS picks the port).
        println!("serving {n} repos on http://{local}");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app).await.context("server stopped")?;
        Ok::<(), anyhow::Error>(())
    })
}
