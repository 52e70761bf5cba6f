//! Downloads: a repo snapshot into the shared cache or a plain folder, resumable
//! (a partial file continues with a Range request), verified (sha256 for LFS files, size for
//! the rest), retried, and never visible at its final path before it is complete.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use globset::{Glob, GlobSet, GlobSetBuilder};
use hubscope_core::hub::{RepoRef, is_commit, is_safe_repo_path, is_sha256};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use sha2::Sha256;

use super::cache::{RepoCache, offline};
use super::client::{Failure, FileMeta, HubClient};

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Downloaded,
    Resumed,
    Cached,
    /// --dry-run: would be downloaded.
    Planned,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileResult {
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    pub status: FileStatus,
}

#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    pub folder: PathBuf,
    pub files: Vec<FileResult>,
}

fn globs(patterns: &[String], flag: &str) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).with_context(|| format!("{flag} {p}: not a glob pattern"))?);
    }
    Ok(Some(b.build()?))
}

/// Where a file goes: the partial it grows in and its final path.
struct Placement {
    partial: PathBuf,
    final_path: PathBuf,
}

enum Target {
    Cache(RepoCache),
    LocalDir(PathBuf),
}

impl Target {
    fn place(&self, file: &str, meta: &FileMeta) -> Placement {
        match self {
            Target::Cache(rc) => Placement {
                partial: rc.blob(&format!("{}.incomplete", meta.etag)),
                final_path: rc.blob(&meta.etag),
            },
            Target::LocalDir(d) => Placement {
                partial: d
                    .join(".cache/huggingface/download")
                    .join(format!("{file}.incomplete")),
                final_path: d.join(file),
            },
        }
    }
    /// Is this file already complete at its final place, at this version?
    fn complete(&self, file: &str, meta: &FileMeta) -> bool {
        let p = self.place(file, meta);
        let size_ok = std::fs::metadata(&p.final_path)
            .map(|m| m.len() == meta.size)
            .unwrap_or(false);
        match self {
            Target::Cache(_) => size_ok,
            Target::LocalDir(d) => {
                size_ok
                    && std::fs::read_to_string(metadata_path(d, file))
                        .map(|m| m.lines().nth(1) == Some(meta.etag.as_str()))
                        .unwrap_or(false)
            }
        }
    }
}

/// huggingface_hub's record of a local-dir file: commit, etag, timestamp.
fn metadata_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(".cache/huggingface/download")
        .join(format!("{file}.metadata"))
}

fn sha256_file(p: &Path) -> Result<String> {
    super::digest::<Sha256>(&mut File::open(p)?, b"")
}

/// Download one file into its partial (resuming), verify it, move it to its final path.
fn fetch(
    client: &HubClient,
    repo: &RepoRef,
    file: &str,
    meta: &FileMeta,
    place: &Placement,
    progress: &dyn Fn(u64),
) -> Result<FileStatus> {
    if let Some(dir) = place.partial.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    let have = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    if have(&place.partial) > meta.size {
        std::fs::remove_file(&place.partial)?;
    }
    // The partial exists from the start, so an empty file (a zero-byte README or __init__.py)
    // is a file like any other.
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&place.partial)
        .with_context(|| format!("{}: cannot create", place.partial.display()))?;
    let status = if have(&place.partial) > 0 {
        FileStatus::Resumed
    } else {
        FileStatus::Downloaded
    };
    let what = format!("{}: {file}", repo.id);
    client
        .retrying(&what, || {
            let from = have(&place.partial);
            if from == meta.size {
                return Ok(());
            }
            let (ranged, mut body) = client.get_from(repo, file, from)?;
            let mut out = if from > 0 && ranged {
                OpenOptions::new().append(true).open(&place.partial)
            } else {
                File::create(&place.partial) // no range support: start over
            }
            .map_err(|e| Failure::Transport(format!("{}: {e}", place.partial.display())))?;
            let mut pos = if ranged { from } else { 0 };
            progress(pos);
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        return Err(Failure::Transport(format!(
                            "connection lost after {pos} bytes: {e}"
                        )));
                    }
                };
                out.write_all(&buf[..n])
                    .map_err(|e| Failure::Transport(format!("{}: {e}", place.partial.display())))?;
                pos += n as u64;
                progress(pos);
            }
            out.flush().map_err(|e| Failure::Transport(e.to_string()))?;
            if pos < meta.size {
                return Err(Failure::Transport(format!(
                    "connection closed after {pos} of {} bytes",
                    meta.size
                )));
            }
            Ok(())
        })
        .map_err(|f| client.failure(f, repo, &what))?;
    let size = have(&place.partial);
    if size != meta.size {
        std::fs::remove_file(&place.partial)?;
        bail!(
            "{what}: got {size} bytes, expected {}; deleted the partial file, run again",
            meta.size
        );
    }
    if is_sha256(&meta.etag) {
        let got = sha256_file(&place.partial)?;
        if got != meta.etag {
            std::fs::remove_file(&place.partial)?;
            bail!(
                "{what}: sha256 mismatch (expected {}, got {got}); deleted the partial file, run again",
                meta.etag
            );
        }
    }
    if let Some(dir) = place.final_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::rename(&place.partial, &place.final_path)
        .with_context(|| format!("{}: cannot move into place", place.final_path.display()))?;
    Ok(status)
}

/// What to download: a repo at a revision, into the cache or a plain folder, filtered.
pub struct SnapshotRequest<'a> {
    pub repo: &'a RepoRef,
    /// The shared cache (always used for the revision's refs; for files unless `local_dir`).
    pub cache: &'a Path,
    pub local_dir: Option<&'a Path>,
    /// Globs of files to take (all when empty) and to skip.
    pub include: &'a [String],
    pub exclude: &'a [String],
    /// Resolve and list only; write nothing.
    pub dry_run: bool,
    pub show_progress: bool,
}

/// Resolve and download (or find in the cache) the files of the repo that pass the filters.
pub fn snapshot(client: &HubClient, r: SnapshotRequest<'_>) -> Result<Snapshot> {
    let SnapshotRequest {
        repo,
        cache,
        local_dir,
        include,
        exclude,
        dry_run,
        show_progress,
    } = r;
    let inc = globs(include, "--include")?;
    let exc = globs(exclude, "--exclude")?;
    let wanted = |f: &str| {
        inc.as_ref().is_none_or(|g| g.is_match(f)) && !exc.as_ref().is_some_and(|g| g.is_match(f))
    };
    let rc = RepoCache::new(cache, repo);

    if offline() {
        // No network: what the cache (or the folder) already holds.
        let folder = match local_dir {
            Some(d) if d.is_dir() => d.to_path_buf(),
            Some(d) => bail!(
                "{}: HF_HUB_OFFLINE is set and the folder does not exist",
                d.display()
            ),
            None => {
                let commit = rc.resolve(&repo.revision).with_context(|| {
                    format!(
                        "{}@{}: HF_HUB_OFFLINE is set and the revision is not in the cache ({})",
                        repo.id,
                        repo.revision,
                        cache.display()
                    )
                })?;
                rc.snapshot(&commit)
            }
        };
        let commit = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(Snapshot {
            repo: repo.id.clone(),
            revision: repo.revision.clone(),
            commit,
            folder,
            files: vec![],
        });
    }

    let info = client.info(repo)?;
    let commit = info.sha.clone();
    // Everything a server says that becomes a path is checked before it does.
    if !is_commit(&commit) {
        bail!(
            "{}@{}: the server sent {commit:?} as the commit (expected 40 hex digits)",
            repo.id,
            repo.revision
        );
    }
    if let Some(bad) = info
        .siblings
        .iter()
        .find(|s| !is_safe_repo_path(&s.rfilename))
    {
        bail!(
            "{}: the server listed an unsafe file name {:?}",
            repo.id,
            bad.rfilename
        );
    }
    let pinned = RepoRef {
        id: repo.id.clone(),
        revision: commit.clone(),
    };
    let files: Vec<_> = info
        .siblings
        .iter()
        .filter(|s| wanted(&s.rfilename))
        .collect();
    let target = match local_dir {
        Some(d) => Target::LocalDir(d.to_path_buf()),
        None => Target::Cache(RepoCache::new(cache, repo)),
    };
    let folder = match &target {
        Target::Cache(rc) => rc.snapshot(&commit),
        Target::LocalDir(d) => d.clone(),
    };

    let multi = MultiProgress::with_draw_target(if show_progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "{msg:30!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
    )
    .expect("template");
    let total_size: u64 = files
        .iter()
        .map(|s| s.lfs.as_ref().map(|l| l.size).or(s.size).unwrap_or(0))
        .sum();
    let total = multi.add(
        ProgressBar::new(total_size)
            .with_style(style.clone())
            .with_message(format!("{} (total)", repo.id)),
    );
    let mut results = vec![];
    let mut done_bytes = 0u64;
    for s in files {
        let file = s.rfilename.as_str();
        let meta = client.head(&pinned, file)?;
        let place = target.place(file, &meta);
        let status = if target.complete(file, &meta) {
            FileStatus::Cached
        } else if dry_run {
            FileStatus::Planned
        } else {
            let bar = multi.add(
                ProgressBar::new(meta.size)
                    .with_style(style.clone())
                    .with_message(file.to_string()),
            );
            let r = fetch(client, &pinned, file, &meta, &place, &|pos| {
                bar.set_position(pos);
                total.set_position(done_bytes + pos);
            });
            bar.finish_and_clear();
            r?
        };
        done_bytes += meta.size;
        total.set_position(done_bytes);
        let path = match (&target, status) {
            (_, FileStatus::Planned) => folder.join(file),
            (Target::Cache(rc), _) => rc.link(&commit, file, &meta.etag)?,
            (Target::LocalDir(d), _) => {
                let mp = metadata_path(d, file);
                std::fs::create_dir_all(mp.parent().expect("metadata dir"))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                std::fs::write(&mp, format!("{commit}\n{}\n{now}\n", meta.etag))?;
                d.join(file)
            }
        };
        results.push(FileResult {
            file: file.to_string(),
            path,
            size: meta.size,
            status,
        });
    }
    total.finish_and_clear();
    if !dry_run {
        if let Target::Cache(rc) = &target {
            std::fs::create_dir_all(rc.snapshot(&commit))?;
            rc.write_ref(&repo.revision, &commit)?;
        }
    }
    Ok(Snapshot {
        repo: repo.id.clone(),
        revision: repo.revision.clone(),
        commit,
        folder,
        files: results,
    })
}
