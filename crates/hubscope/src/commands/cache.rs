//! `hubscope cache`: list or delete what the shared cache holds.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use hubscope_core::units::human_bytes;
use serde_json::json;

use crate::hub::cache::{cache_dir, list, remove};

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The cache (default: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// List cached repos and revisions with their size on disk.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Delete a cached repo, or one revision of it (`org/name@rev`).
    Rm { repo: String },
}

pub fn run(a: CacheArgs) -> Result<()> {
    let cache = cache_dir(a.cache_dir.as_deref());
    match a.command {
        CacheCommand::Ls { json } => {
            let repos = list(&cache);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"cache_dir": cache, "repos": repos}))?
                );
            } else {
                println!("{:<48} {:>12} {:>6}  {}", "REPO ID", "SIZE", "REVS", "REFS");
                for r in &repos {
                    let refs: Vec<String> = r["revisions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|v| v["refs"].as_array().cloned().unwrap_or_default())
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect();
                    println!(
                        "{:<48} {:>12} {:>6}  {}",
                        r["repo_id"].as_str().unwrap_or(""),
                        human_bytes(r["size_on_disk"].as_u64().unwrap_or(0)),
                        r["revisions"].as_array().map_or(0, Vec::len),
                        refs.join(",")
                    );
                }
                println!("{}", cache.display());
            }
        }
        CacheCommand::Rm { repo } => println!("{}", remove(&cache, &repo)?),
    }
    Ok(())
}
