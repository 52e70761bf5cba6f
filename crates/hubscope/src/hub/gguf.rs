//! `<MODEL>` as a GGUF file: a local `.gguf`, a folder holding GGUF files and no safetensors,
//! or a Hub repo of GGUF files (`--file` picks one where there are several). The header is read
//! from the file's start alone (local reads or HTTP Range requests, a bounded number of them).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hubscope_core::gguf::{GgufHeader, RangeReader, choose, is_gguf, read_gguf_header};
use hubscope_core::hub::RepoRef;

use super::client::HubClient;

/// A GGUF header and where it came from.
pub struct GgufSource {
    pub header: GgufHeader,
    pub source: String,
    pub file: String,
    pub size: Option<u64>,
    pub reads: usize,
    pub bytes_read: u64,
}

/// A local `.gguf` file, or the GGUF file of a local folder (see [`choose`]); None when the
/// path is not a GGUF model.
pub fn local(model: &str, file: Option<&str>) -> Result<Option<GgufSource>> {
    let path = Path::new(model);
    if path.is_file() {
        if !is_gguf(model) {
            bail!("{model}: a file that is not .gguf (give the model's folder)");
        }
        return read_local(path.to_path_buf()).map(Some);
    }
    if !path.is_dir() {
        return Ok(None);
    }
    let mut names = vec![];
    for e in std::fs::read_dir(path).with_context(|| format!("{model}: cannot list"))? {
        names.push(e?.file_name().to_string_lossy().into_owned());
    }
    let has_st = names.iter().any(|n| n.ends_with(".safetensors"));
    match choose(&names, file, has_st, model)? {
        Some(f) => read_local(path.join(f)).map(Some),
        None => Ok(None),
    }
}

/// The header of `file` (`size` bytes) in a repo pinned to a commit, by HTTP Range reads.
pub fn remote(
    client: &HubClient,
    repo: &RepoRef,
    file: &str,
    size: Option<u64>,
    source: String,
) -> Result<GgufSource> {
    let r = pollster::block_on(read_gguf_header(&Remote { client, repo, file }, file, size))?;
    Ok(GgufSource {
        header: r.header,
        source,
        file: file.to_string(),
        size,
        reads: r.reads,
        bytes_read: r.bytes_read,
    })
}

fn read_local(path: PathBuf) -> Result<GgufSource> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    let r = pollster::block_on(read_gguf_header(&Local { path: &path }, &name, Some(size)))?;
    Ok(GgufSource {
        header: r.header,
        source: path.display().to_string(),
        file: name,
        size: Some(size),
        reads: r.reads,
        bytes_read: r.bytes_read,
    })
}

struct Local<'a> {
    path: &'a Path,
}

impl RangeReader for Local<'_> {
    type Error = anyhow::Error;
    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut f = std::fs::File::open(self.path)
            .with_context(|| format!("{}: cannot open", self.path.display()))?;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![];
        f.take(end.saturating_sub(start)).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

struct Remote<'a> {
    client: &'a HubClient,
    repo: &'a RepoRef,
    file: &'a str,
}

impl RangeReader for Remote<'_> {
    type Error = anyhow::Error;
    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        if end <= start {
            return Ok(vec![]);
        }
        self.client
            .get_bytes(self.repo, self.file, Some((start, end - 1)))
    }
}
