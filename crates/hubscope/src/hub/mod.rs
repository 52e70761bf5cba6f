//! The Hub side of the native binary (libraries; the commands live in `commands/`): the HTTP
//! client, the shared cache, downloads and the Hub-compatible server. `<MODEL>` arguments resolve here: a local folder, or a repo id.

pub mod cache;
pub mod client;
pub mod download;
pub mod gguf;
pub mod serve;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use hubscope_core::gguf::{choose, is_gguf};
use hubscope_core::hub::{RepoReader, RepoRef, read_repo_headers};
use hubscope_core::safetensors::FileHeader;
use serde_json::{Value, json};

use crate::folder::ModelFolder;
use cache::cache_dir;
use client::HubClient;

#[derive(Args, Clone)]
pub struct HubArgs {
    /// Hub endpoint or mirror (default: HF_ENDPOINT, else https://huggingface.co).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Access token for gated or private repos (default: HF_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Revision (branch, tag or commit); `org/name@rev` works too.
    #[arg(long)]
    pub revision: Option<String>,
    /// The shared cache (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// The GGUF file to use where a folder or repo holds several
    /// (`qwen2.5-0.5b-instruct-q4_k_m.gguf`); a repo of GGUF files downloads only that one.
    #[arg(long)]
    pub file: Option<String>,
}

/// The files a model needs to run (not README, images, other formats).
pub const MODEL_FILES: [&str; 7] = [
    "*.json",
    "*.safetensors",
    "*.bpk",
    "tokenizer*",
    "*.jinja",
    "*.txt",
    "*.model",
];

/// A local folder (or `.gguf` file) as it is; a repo id is downloaded (resumably, into the
/// cache) first. `--file` names a GGUF file: the path returned is that file's, and of a repo of
/// GGUF files (no safetensors) only the chosen file is downloaded.
pub fn local_or_download(model: &str, hub: &HubArgs) -> Result<PathBuf> {
    let path = Path::new(model);
    let gguf_file = hub.file.as_deref().filter(|f| is_gguf(f));
    if path.is_file() && is_gguf(model) {
        return Ok(PathBuf::from(model));
    }
    if path.is_dir() {
        return match gguf_file {
            Some(f) if !path.join(f).is_file() => bail!("{}: no such file", path.join(f).display()),
            Some(f) => Ok(path.join(f)),
            None => Ok(PathBuf::from(model)),
        };
    }
    let repo = RepoRef::parse(model, hub.revision.as_deref())
        .with_context(|| format!("{model}: neither a folder nor a Hub repo id"))?;
    let client = HubClient::new(hub.endpoint.clone(), hub.token.clone())?;
    let mut include: Vec<String> = MODEL_FILES.iter().map(|s| s.to_string()).collect();
    let mut chosen = gguf_file.map(str::to_string);
    if !cache::offline() {
        let names: Vec<String> = client
            .info(&repo)?
            .files()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let has_st = names.iter().any(|n| n.ends_with(".safetensors"));
        chosen = choose(&names, hub.file.as_deref(), has_st, &repo.id)?;
    }
    if let Some(g) = &chosen {
        include = vec![g.clone()];
    }
    let folder = into_cache(&client, &repo, hub, &include)?;
    Ok(match chosen {
        Some(g) => folder.join(g),
        None => folder,
    })
}

/// The files that say what a model is and how it reads text (config, tokenizer, chat
/// template): what a plan of a run needs, never the weights.
pub const TEXT_FILES: [&str; 5] = ["*.json", "tokenizer*", "*.jinja", "*.txt", "*.model"];

/// A local folder as it is; of a repo id only its [`TEXT_FILES`] are downloaded.
pub fn local_or_download_text(model: &str, hub: &HubArgs) -> Result<PathBuf> {
    if Path::new(model).exists() {
        return Ok(PathBuf::from(model));
    }
    let repo = RepoRef::parse(model, hub.revision.as_deref())
        .with_context(|| format!("{model}: neither a folder nor a Hub repo id"))?;
    let client = HubClient::new(hub.endpoint.clone(), hub.token.clone())?;
    let include: Vec<String> = TEXT_FILES.iter().map(|s| s.to_string()).collect();
    into_cache(&client, &repo, hub, &include)
}

/// The repo's files that pass `include`, downloaded (resumably) into the cache: its folder.
fn into_cache(
    client: &HubClient,
    repo: &RepoRef,
    hub: &HubArgs,
    include: &[String],
) -> Result<PathBuf> {
    let snap = download::snapshot(
        client,
        download::SnapshotRequest {
            repo,
            cache: &cache_dir(hub.cache_dir.as_deref()),
            local_dir: None,
            include,
            exclude: &[],
            dry_run: false,
            show_progress: std::io::stderr().is_terminal(),
        },
    )?;
    Ok(snap.folder)
}

/// What `inspect` and the planner read: config.json and the checkpoint's headers, never the
/// weight data.
pub struct Headers {
    pub config: Vec<u8>,
    pub headers: Vec<FileHeader>,
    /// Bytes of safetensors files read (8-byte lengths + JSON headers).
    pub header_bytes: u64,
    /// Bytes of all requests/reads (config, index, headers).
    pub total_bytes: u64,
    pub stored_bytes: u64,
    pub files: Vec<Value>,
    pub source: String,
}

/// What `inspect` and `mem` read of a model: safetensors headers with config.json, or a GGUF
/// file's header. A repo's file list is fetched once and decides which.
pub enum Checkpoint {
    Safetensors(Headers),
    Gguf(gguf::GgufSource),
}

/// The headers of `model` (a folder, a `.gguf` file or a repo id); `file` picks a GGUF file
/// where there are several.
pub fn read_checkpoint(model: &str, hub: &HubArgs, file: Option<&str>) -> Result<Checkpoint> {
    if let Some(g) = gguf::local(model, file)? {
        return Ok(Checkpoint::Gguf(g));
    }
    if Path::new(model).is_dir() {
        return folder_headers(&ModelFolder::open(model)?).map(Checkpoint::Safetensors);
    }
    let repo = RepoRef::parse(model, hub.revision.as_deref())
        .with_context(|| format!("{model}: neither a folder nor a Hub repo id"))?;
    if cache::offline() {
        // HF_HUB_OFFLINE: the cache's snapshot of that revision, and not one request.
        let cache = cache_dir(hub.cache_dir.as_deref());
        let rc = cache::RepoCache::new(&cache, &repo);
        let commit = rc.resolve(&repo.revision).with_context(|| {
            format!(
                "{}@{}: HF_HUB_OFFLINE is set and this revision is not in the cache ({}); download it first or unset HF_HUB_OFFLINE",
                repo.id,
                repo.revision,
                cache.display()
            )
        })?;
        let snap = rc.snapshot(&commit);
        let source = format!(
            "{}@{} ({commit}, from the cache, offline)",
            repo.id, repo.revision
        );
        let snap = snap.to_string_lossy();
        if let Some(mut g) = gguf::local(&snap, file)? {
            g.source = source;
            return Ok(Checkpoint::Gguf(g));
        }
        let mut h = folder_headers(&ModelFolder::open(&snap)?)?;
        h.source = source;
        return Ok(Checkpoint::Safetensors(h));
    }
    let client = HubClient::new(hub.endpoint.clone(), hub.token.clone())?;
    let info = client.info(&repo)?;
    let pinned = RepoRef {
        id: repo.id.clone(),
        revision: info.sha.clone(),
    };
    let sizes = info.files();
    let source = format!("{}@{} ({})", repo.id, repo.revision, info.sha);
    let names: Vec<String> = sizes.iter().map(|(n, _)| n.clone()).collect();
    let has_st = names.iter().any(|n| n.ends_with(".safetensors"));
    if let Some(f) = hubscope_core::gguf::choose(&names, file, has_st, &repo.id)? {
        let size = sizes.iter().find(|(n, _)| *n == f).and_then(|(_, s)| *s);
        return gguf::remote(&client, &pinned, &f, size, source).map(Checkpoint::Gguf);
    }
    let r = pollster::block_on(read_repo_headers(
        &Pinned {
            client: &client,
            repo: &pinned,
        },
        &repo.id,
        &sizes,
    ))?;
    let files = r
        .headers
        .iter()
        .map(|h| json!({"file": h.file, "tensors": h.tensors.len(), "data_bytes": h.data_len}))
        .collect();
    Ok(Checkpoint::Safetensors(Headers {
        config: r.config,
        headers: r.headers,
        header_bytes: r.header_bytes,
        total_bytes: r.fetched_bytes,
        stored_bytes: r.stored_bytes,
        files,
        source,
    }))
}

/// The safetensors headers of `model`; a GGUF model is an error here.
pub fn read_headers(model: &str, hub: &HubArgs) -> Result<Headers> {
    match read_checkpoint(model, hub, None)? {
        Checkpoint::Safetensors(h) => Ok(h),
        Checkpoint::Gguf(g) => anyhow::bail!("{model}: {} is a GGUF file, not safetensors", g.file),
    }
}

/// The native client as the core's reader of one pinned repo.
struct Pinned<'a> {
    client: &'a HubClient,
    repo: &'a RepoRef,
}

impl RepoReader for Pinned<'_> {
    type Error = anyhow::Error;
    async fn get(&self, file: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
        self.client.get_bytes(self.repo, file, range)
    }
}

fn folder_headers(folder: &ModelFolder) -> Result<Headers> {
    let config = folder.read("config.json")?;
    let mut h = Headers {
        total_bytes: config.len() as u64,
        config,
        headers: vec![],
        header_bytes: 0,
        stored_bytes: 0,
        files: vec![],
        source: folder.dir.display().to_string(),
    };
    if folder.is_burnpack() {
        let name = hubscope_core::burnpack::BURNPACK_FILE;
        let bytes = folder.read(name)?;
        let size = bytes.len() as u64;
        let (fh, _) = hubscope_core::burnpack::read_burnpack(name, bytes)?;
        h.files
            .push(json!({"file": name, "tensors": fh.tensors.len(), "data_bytes": size}));
        h.headers.push(fh);
        h.stored_bytes += size;
        h.header_bytes += size;
        h.total_bytes += size;
        return Ok(h);
    }
    for f in folder.weight_files()? {
        let (fh, read) = folder.read_header(&f)?;
        h.header_bytes += read;
        h.total_bytes += read;
        h.stored_bytes += fh.data_len as u64;
        h.files
            .push(json!({"file": f, "tensors": fh.tensors.len(), "data_bytes": fh.data_len}));
        h.headers.push(fh);
    }
    Ok(h)
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Digest of everything `r` yields after `prefix`, read in 1 MiB pieces (sha256 of LFS files,
/// git's sha1 of `blob N\0` + content for the rest).
pub fn digest<D: sha2::Digest>(r: &mut impl std::io::Read, prefix: &[u8]) -> Result<String> {
    let mut h = D::new();
    h.update(prefix);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}
