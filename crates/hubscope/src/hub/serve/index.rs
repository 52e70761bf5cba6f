//! What `hubscope serve` serves: repos indexed from model folders (`org/name/` under a root,
//! or `PREFIX=DIR`) and from the local HF cache (refs, snapshots, blobs), each file with its
//! size, its ETag (sha256 for LFS files, the git blob id otherwise) and its real path. Files
//! whose real path leaves their root are never indexed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::hub::{digest, hex};

#[derive(Debug, Clone)]
pub struct FileEntry {
    pub path: String,
    pub full: PathBuf,
    pub size: u64,
    pub etag: String,
    pub lfs: bool,
}

#[derive(Debug, Clone)]
pub struct Rev {
    pub commit: String,
    pub files: BTreeMap<String, FileEntry>,
}

#[derive(Debug, Default)]
pub struct RepoEntry {
    /// Revision name or commit -> the revision.
    pub revs: HashMap<String, Arc<Rev>>,
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

pub fn scan_models(spec: &str, repos: &mut BTreeMap<String, RepoEntry>) -> Result<()> {
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
pub fn scan_cache(cache: &Path, repos: &mut BTreeMap<String, RepoEntry>) -> Result<()> {
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
