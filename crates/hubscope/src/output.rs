//! Output folders: never over the user's files, and never visible at their final path before
//! every file is written.

use std::path::Path;

use anyhow::{Context, Result, bail};
use hubscope_core::OutFile;

/// An output folder must not exist yet, or be empty: nothing of the user's is overwritten.
pub fn ensure_free_target(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{}: already exists and is not an empty folder",
            out.display()
        );
    }
    Ok(())
}

/// Write every file into `<out>.partial-<pid>`, then rename it to `out`: an interrupted
/// export never leaves a folder that looks complete.
pub fn write_atomically(out: &Path, files: &[OutFile]) -> Result<()> {
    let tmp = partial_path(out)?;
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let result = (|| -> Result<()> {
        for f in files {
            let p = tmp.join(&f.name);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("{}: cannot create", dir.display()))?;
            }
            std::fs::write(&p, &f.bytes)
                .with_context(|| format!("{}: cannot write", p.display()))?;
        }
        if out.exists() {
            std::fs::remove_dir(out)
                .with_context(|| format!("{}: cannot replace", out.display()))?;
        }
        std::fs::rename(&tmp, out)
            .with_context(|| format!("{}: cannot move into place", out.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Write one file as `<out>.partial-<pid>`, then rename it to `out`: an interrupted write
/// never leaves a file that looks complete.
pub fn write_file_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(out)?;
    let result = std::fs::write(&tmp, bytes)
        .with_context(|| format!("{}: cannot write", tmp.display()))
        .and_then(|_| {
            std::fs::rename(&tmp, out)
                .with_context(|| format!("{}: cannot move into place", out.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `<out>.partial-<pid>`: where a file or folder is written before it is renamed to `out`.
fn partial_path(out: &Path) -> Result<std::path::PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file or folder name", out.display()))?;
    Ok(out.with_file_name(format!(
        "{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}
