//! `hubscope download`: a repo snapshot into the shared cache or a plain folder, resumable,
//! verified, never visible at its final path before it is complete (see `hub::download`).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use hubscope_core::hub::RepoRef;
use serde_json::json;

use crate::hub::HubArgs;
use crate::hub::cache::cache_dir;
use crate::hub::client::HubClient;
use crate::hub::download::{FileStatus, SnapshotRequest, snapshot};

#[derive(Args)]
pub struct DownloadArgs {
    /// `org/name` or `org/name@revision`.
    pub repo: String,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Only files matching (glob, repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files matching (glob, repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Write plain files into this folder instead of the shared cache.
    #[arg(long)]
    pub local_dir: Option<PathBuf>,
    /// Show what would be downloaded, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DownloadArgs) -> Result<()> {
    let repo = RepoRef::parse(&a.repo, a.hub.revision.as_deref())?;
    let client = HubClient::new(a.hub.endpoint.clone(), a.hub.token.clone())?;
    let cache = cache_dir(a.hub.cache_dir.as_deref());
    let show = std::io::stdout().is_terminal() && !a.json;
    let snap = snapshot(
        &client,
        SnapshotRequest {
            repo: &repo,
            cache: &cache,
            local_dir: a.local_dir.as_deref(),
            include: &a.include,
            exclude: &a.exclude,
            dry_run: a.dry_run,
            show_progress: show,
        },
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!(snap))?);
        return Ok(());
    }
    for f in &snap.files {
        let st = match f.status {
            FileStatus::Downloaded => "downloaded",
            FileStatus::Resumed => "resumed",
            FileStatus::Cached => "cached",
            FileStatus::Planned => "would download",
        };
        println!("{st:>14}  {:>12}  {}", f.size, f.file);
    }
    if !snap.files.is_empty() {
        println!("{} @ {} ({})", snap.repo, snap.revision, snap.commit);
    }
    println!("{}", snap.folder.display());
    Ok(())
}
