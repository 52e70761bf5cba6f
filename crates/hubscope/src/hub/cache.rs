//! The shared Hugging Face cache, laid out exactly as huggingface_hub lays it out:
//! `models--org--name/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>, refs/<rev>}`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use hubscope_core::hub::{RepoRef, is_commit};
use serde_json::{Value, json};

/// `--cache-dir`, else `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("HF_HUB_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("HF_HOME").filter(|p| !p.is_empty()) {
        Some(home) => hf_hub::Cache::new(PathBuf::from(home).join("hub"))
            .path()
            .clone(),
        None => hf_hub::Cache::default().path().clone(),
    }
}

pub fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE").as_deref(),
        Ok("1") | Ok("true") | Ok("TRUE") | Ok("yes")
    )
}

/// One repo in the cache.
pub struct RepoCache {
    pub root: PathBuf,
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &RepoRef) -> Self {
        RepoCache {
            root: cache.join(repo.cache_folder()),
        }
    }
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }
    /// The commit a revision points to: the ref file, or the revision itself if it is a commit
    /// with a snapshot.
    pub fn resolve(&self, revision: &str) -> Option<String> {
        if let Ok(c) = std::fs::read_to_string(self.root.join("refs").join(revision)) {
            // A ref file names a commit; anything else never becomes a path.
            let c = c.trim();
            return is_commit(c).then(|| c.to_string());
        }
        self.snapshot(revision)
            .is_dir()
            .then(|| revision.to_string())
    }
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let p = self.root.join("refs").join(revision);
        std::fs::create_dir_all(p.parent().expect("refs dir"))?;
        std::fs::write(&p, commit).with_context(|| format!("{}: cannot write", p.display()))
    }
    /// `snapshots/<commit>/<file>` as a relative symlink to `blobs/<etag>`.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.snapshot(commit).join(file);
        std::fs::create_dir_all(pointer.parent().expect("snapshot dir"))?;
        let depth = file.split('/').count() + 1; // up from the file's folder to the repo root
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
        if std::fs::symlink_metadata(&pointer).is_ok() {
            std::fs::remove_file(&pointer)?;
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &pointer)
            .with_context(|| format!("{}: cannot link", pointer.display()))?;
        #[cfg(not(unix))]
        std::fs::copy(self.blob(etag), &pointer)
            .with_context(|| format!("{}: cannot copy", pointer.display()))?;
        Ok(pointer)
    }
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

fn modified(p: &Path) -> Option<SystemTime> {
    let mut latest = std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = if e.path().is_dir() {
                modified(&e.path())
            } else {
                e.metadata().and_then(|m| m.modified()).ok()
            };
            latest = latest.max(m);
        }
    }
    latest
}

fn secs(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Blob names a snapshot points to.
fn snapshot_blobs(snap: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(snap) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                snapshot_blobs(&p, out);
            } else if let Ok(t) = std::fs::canonicalize(&p) {
                out.push(t);
            }
        }
    }
}

/// Every cached repo with its revisions (commit, refs, files, size on disk, last modified),
/// as `huggingface_hub`'s `scan_cache_dir` reports them.
pub fn list(cache: &Path) -> Vec<Value> {
    let mut repos = vec![];
    let mut entries: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.flatten().collect())
        .unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("models--") else {
            continue;
        };
        let id = id.replace("--", "/");
        let root = e.path();
        let mut refs = std::collections::BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(root.join("refs")) {
            for r in rd.flatten() {
                if let Ok(c) = std::fs::read_to_string(r.path()) {
                    refs.entry(c.trim().to_string())
                        .or_insert_with(Vec::new)
                        .push(r.file_name().to_string_lossy().into_owned());
                }
            }
        }
        let mut revisions = vec![];
        if let Ok(rd) = std::fs::read_dir(root.join("snapshots")) {
            for s in rd.flatten() {
                let commit = s.file_name().to_string_lossy().into_owned();
                let mut blobs = vec![];
                snapshot_blobs(&s.path(), &mut blobs);
                let size: u64 = blobs
                    .iter()
                    .filter_map(|b| b.metadata().ok())
                    .map(|m| m.len())
                    .sum();
                revisions.push(json!({"commit": commit, "refs": refs.get(&commit).cloned().unwrap_or_default(),
                    "files": blobs.len(), "size_on_disk": size, "last_modified": secs(modified(&s.path()))}));
            }
        }
        repos.push(
            json!({"repo_id": id, "path": root, "size_on_disk": dir_size(&root.join("blobs")),
            "last_modified": secs(modified(&root)), "revisions": revisions}),
        );
    }
    repos
}

/// Delete a cached repo, or one revision of it (`org/name@rev`): its snapshot, the blobs no
/// other snapshot uses, and the refs naming it. Says what was deleted.
pub fn remove(cache: &Path, repo: &str) -> Result<String> {
    let explicit_rev = repo.contains('@');
    let r = RepoRef::parse(repo, None)?;
    let rc = RepoCache::new(&cache, &r);
    if !rc.root.is_dir() {
        bail!("{}: not in the cache ({})", r.id, cache.display());
    }
    if !explicit_rev {
        std::fs::remove_dir_all(&rc.root)
            .with_context(|| format!("{}: cannot delete", rc.root.display()))?;
        return Ok(format!("deleted {} ({})", r.id, rc.root.display()));
    }
    let commit = rc
        .resolve(&r.revision)
        .with_context(|| format!("{}@{}: no such revision in the cache", r.id, r.revision))?;
    let mut gone = vec![];
    snapshot_blobs(&rc.snapshot(&commit), &mut gone);
    // Only blobs of this repo's own blobs/ folder: a snapshot entry pointing anywhere
    // else is unlinked with its snapshot, never followed.
    let own = std::fs::canonicalize(rc.root.join("blobs")).ok();
    gone.retain(|b| own.as_ref().is_some_and(|o| b.starts_with(o)));
    std::fs::remove_dir_all(rc.snapshot(&commit))?;
    // Keep blobs another snapshot still uses.
    let mut kept = vec![];
    if let Ok(rd) = std::fs::read_dir(rc.root.join("snapshots")) {
        for s in rd.flatten() {
            snapshot_blobs(&s.path(), &mut kept);
        }
    }
    for b in gone.iter().filter(|b| !kept.contains(b)) {
        let _ = std::fs::remove_file(b);
    }
    if let Ok(rd) = std::fs::read_dir(rc.root.join("refs")) {
        for e in rd.flatten() {
            if std::fs::read_to_string(e.path())
                .map(|c| c.trim() == commit)
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(format!("deleted {}@{} ({commit})", r.id, r.revision))
}
