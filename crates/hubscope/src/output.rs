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
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a folder name", out.display()))?;
    let tmp = out.with_file_name(format!(
        "{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let result = (|| -> Result<()> {
        for f in files {
            let p = tmp.join(&f.name);
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
