//! `hubscope serve`: serve model folders and the HF cache over a Hub-compatible API (and the
//! web app), for huggingface_hub, hf-hub, the page and hubscope itself.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::chat::{self, ChatOptions};
use crate::device::DeviceArgs;
use crate::hub::HubArgs;
use crate::hub::cache::cache_dir;
use crate::hub::serve::faults::FaultSettings;
use crate::hub::serve::{ServeOptions, run as serve};

#[derive(Args)]
pub struct ServeArgs {
    /// Model folders to serve: DIR holding org/name/ folders (or name/ folders), or PREFIX=DIR to
    /// serve DIR/name as PREFIX/name. Repeatable.
    #[arg(long)]
    pub models: Vec<String>,
    /// Also serve the repos of the local Hugging Face cache.
    #[arg(long)]
    pub hf_cache: bool,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Serve this folder (the built web app) at `/`.
    #[arg(long)]
    pub web: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Answer file GETs and HEADs of LFS files with a 302 to a second origin on this port that
    /// serves the bytes (as huggingface.co redirects to its CDN), for testing clients.
    #[arg(long)]
    pub cdn_port: Option<u16>,
    /// Require `Authorization: Bearer TOKEN` for file and API requests (like a gated repo).
    #[arg(long)]
    pub require_token: Option<String>,
    /// Also serve these models over an OpenAI-compatible API (/v1/chat/completions,
    /// /v1/completions, /v1/models): folders or Hub repo ids, comma-separated or repeated;
    /// `NAME=MODEL` serves one under NAME (default: the argument as given).
    #[arg(long, value_delimiter = ',')]
    pub chat: Vec<String>,
    /// A PEFT LoRA adapter for the chat API, `NAME=DIR` (over the first --chat model) or
    /// `BASE:NAME=DIR`; requests name it as model `BASE:NAME`. Repeatable.
    #[arg(long)]
    pub adapter: Vec<String>,
    #[command(flatten)]
    pub dev: DeviceArgs,
    /// Require `Authorization: Bearer KEY` on the API (default: HUBSCOPE_API_KEY).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Most sequences decoded together (continuous batching).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Most requests waiting for a place in the batch; more get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Test only: expose byte counters at /_hubscope/stats.
    #[arg(long, hide = true)]
    pub stats: bool,
    /// Test only: cut the connection after this many body bytes (first N file GETs, see --fault-times).
    #[arg(long, hide = true)]
    pub fault_cut_after: Option<u64>,
    /// Test only: answer the first file GETs with these statuses, e.g. 500,429.
    #[arg(long, hide = true, value_delimiter = ',')]
    pub fault_status: Vec<u16>,
    /// Test only: Retry-After seconds sent with a fault status 429.
    #[arg(long, hide = true, default_value_t = 1)]
    pub fault_retry_after: u64,
    /// Test only: flip a byte in the bodies of LFS files.
    #[arg(long, hide = true)]
    pub fault_corrupt: bool,
    /// Test only: how many file GETs the cut applies to (0 = all).
    #[arg(long, hide = true, default_value_t = 1)]
    pub fault_times: usize,
    /// Test only: throttle file bodies to this many bytes per second.
    #[arg(long, hide = true)]
    pub fault_rate: Option<u64>,
}

pub fn run(a: ServeArgs) -> Result<()> {
    if a.chat.is_empty() && !a.adapter.is_empty() {
        anyhow::bail!("--adapter needs --chat (the model it adapts)");
    }
    let chat = if a.chat.is_empty() {
        None
    } else {
        let api_key = a
            .api_key
            .clone()
            .or_else(|| std::env::var("HUBSCOPE_API_KEY").ok())
            .filter(|k| !k.is_empty());
        Some(chat::start(ChatOptions {
            models: a.chat.clone(),
            adapters: a.adapter.clone(),
            device: a.dev.clone(),
            hub: HubArgs {
                endpoint: None,
                token: None,
                revision: None,
                cache_dir: a.cache_dir.clone(),
                file: None,
            },
            api_key,
            max_batch: a.max_batch,
            max_queue: a.max_queue,
        })?)
    };
    serve(ServeOptions {
        chat,
        hf_cache: a.hf_cache.then(|| cache_dir(a.cache_dir.as_deref())),
        models: a.models,
        web: a.web,
        host: a.host,
        port: a.port,
        cdn_port: a.cdn_port,
        require_token: a.require_token,
        stats: a.stats,
        faults: FaultSettings {
            cut_after: a.fault_cut_after,
            times: a.fault_times,
            statuses: a.fault_status,
            retry_after: a.fault_retry_after,
            corrupt: a.fault_corrupt,
            rate: a.fault_rate,
        },
    })
}
