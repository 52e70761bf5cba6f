//! The Hub side of the native binary: the HTTP client, the shared cache, downloads and the
//! Hub-compatible server. `<MODEL>` arguments resolve here: a local folder, or a repo id.

pub mod cache;
pub mod client;
pub mod download;
pub mod serve;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hubscope_core::hub::RepoRef;
use hubscope_core::weights::{FileHeader, ShardIndex, header_len};
use serde_json::{Value, json};

use crate::folder::ModelFolder;
use cache::cache_dir;
use client::HubClient;
pub use download::HubArgs;

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

/// A local folder as it is; a repo id is downloaded (resumably, into the cache) first.
pub fn local_or_download(model: &str, hub: &HubArgs) -> Result<PathBuf> {
    if Path::new(model).is_dir() {
        return Ok(PathBuf::from(model));
    }
    let repo = RepoRef::parse(model, hub.revision.as_deref())
        .with_context(|| format!("{model}: neither a folder nor a Hub repo id"))?;
    let client = HubClient::new(hub.endpoint.clone(), hub.token.clone())?;
    let include: Vec<String> = MODEL_FILES.iter().map(|s| s.to_string()).collect();
    let show = std::io::stderr().is_terminal();
    let snap = download::snapshot(
        &client,
        &repo,
        &cache_dir(hub.cache_dir.as_deref()),
        None,
        &include,
        &[],
        false,
        show,
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

pub fn read_headers(model: &str, hub: &HubArgs) -> Result<Headers> {
    if Path::new(model).is_dir() {
        return folder_headers(&ModelFolder::open(model)?);
    }
    let repo = RepoRef::parse(model, hub.revision.as_deref())
        .with_context(|| format!("{model}: neither a folder nor a Hub repo id"))?;
    let client = HubClient::new(hub.endpoint.clone(), hub.token.clone())?;
    let info = client.info(&repo)?;
    let pinned = RepoRef {
        id: repo.id.clone(),
        revision: info.sha.clone(),
    };
    let names: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !names.contains(&"config.json") {
        bail!("{}: the repo has no config.json", repo.id);
    }
    let config = client.get_bytes(&pinned, "config.json", None)?;
    let mut total = config.len() as u64;
    let shards: Vec<String> = if names.contains(&"model.safetensors.index.json") {
        let idx = client.get_bytes(&pinned, "model.safetensors.index.json", None)?;
        total += idx.len() as u64;
        ShardIndex::from_json(&idx)?.shards()
    } else if names.contains(&"model.safetensors") {
        vec!["model.safetensors".into()]
    } else {
        bail!(
            "{}: no model.safetensors or model.safetensors.index.json in the repo",
            repo.id
        );
    };
    let (mut headers, mut files, mut header_bytes, mut stored) = (vec![], vec![], 0u64, 0u64);
    for s in shards {
        let size = info
            .siblings
            .iter()
            .find(|x| x.rfilename == s)
            .and_then(|x| x.lfs.as_ref().map(|l| l.size).or(x.size));
        let first8 = client.get_bytes(&pinned, &s, Some((0, 7)))?;
        let n = header_len(&s, &first8)? as u64;
        let json = client.get_bytes(&pinned, &s, Some((8, 8 + n - 1)))?;
        let mut buf = first8;
        buf.extend_from_slice(&json);
        header_bytes += buf.len() as u64;
        let h = FileHeader::parse(&s, &buf, size)?;
        stored += h.data_len as u64;
        files.push(json!({"file": s, "tensors": h.tensors.len(), "data_bytes": h.data_len}));
        headers.push(h);
    }
    total += header_bytes;
    Ok(Headers {
        config,
        headers,
        header_bytes,
        total_bytes: total,
        stored_bytes: stored,
        files,
        source: format!("{}@{} ({})", repo.id, repo.revision, info.sha),
    })
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
        let name = hubscope_core::export::BURNPACK_FILE;
        let bytes = folder.read(name)?;
        let size = bytes.len() as u64;
        let (fh, _) = hubscope_core::export::read_burnpack(name, bytes)?;
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
