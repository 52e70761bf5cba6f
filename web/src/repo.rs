//! A repo on the Hub (or a mirror) as the page reads it: the repo info, then the core's
//! header-only read (config.json and the safetensors headers, a few kilobytes), and a PEFT
//! adapter from any repo and subfolder.

use hubscope_core::ModelConfig;
use hubscope_core::hub::{RepoInfo, RepoReader, RepoRef, info_url, read_repo_headers, resolve_url};
use hubscope_core::lora::AdapterConfig;
use hubscope_core::safetensors::FileHeader;

use crate::error::AppError;
use crate::fetch::get;

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub endpoint: String,
    pub repo: String,
    pub revision: String,
    pub token: String,
}

impl Source {
    pub fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }
}

/// A repo read header-only: config, commit, safetensors headers.
#[derive(Clone)]
pub struct RepoView {
    pub endpoint: String,
    pub repo: RepoRef,
    pub commit: String,
    pub config: ModelConfig,
    /// config.json as served (the model is built from the same bytes).
    pub config_json: Vec<u8>,
    pub headers: Vec<FileHeader>,
    pub fetched_bytes: u64,
    pub stored_bytes: u64,
}

impl RepoView {
    /// The repo at its resolved commit.
    pub fn pinned(&self) -> RepoRef {
        RepoRef {
            id: self.repo.id.clone(),
            revision: self.commit.clone(),
        }
    }
}

/// The page's `fetch` as the core's reader of one pinned repo.
struct PageReader<'a> {
    endpoint: &'a str,
    repo: &'a RepoRef,
    token: Option<&'a str>,
}

impl RepoReader for PageReader<'_> {
    type Error = AppError;
    async fn get(&self, file: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>, AppError> {
        Ok(get(
            &resolve_url(self.endpoint, self.repo, file),
            self.token,
            range,
        )
        .await?)
    }
}

/// Repo info, then the core's header-only read (config.json, per shard two Range reads).
pub async fn open_repo(src: &Source) -> Result<RepoView, AppError> {
    let repo = RepoRef::parse(
        src.repo.trim(),
        Some(src.revision.trim()).filter(|r| !r.is_empty()),
    )?;
    let endpoint = src.endpoint.trim();
    let info = RepoInfo::from_json(&get(&info_url(endpoint, &repo), src.token(), None).await?)?;
    let pinned = RepoRef {
        id: repo.id.clone(),
        revision: info.sha.clone(),
    };
    let r = read_repo_headers(
        &PageReader {
            endpoint,
            repo: &pinned,
            token: src.token(),
        },
        &repo.id,
        &info.files(),
    )
    .await?;
    let config = ModelConfig::from_json(&r.config)?;
    // Fails here, before any download, for a checkpoint whose tensors do not fit the config.
    hubscope_core::load::plan_load(&config, &r.headers)?;
    Ok(RepoView {
        endpoint: endpoint.to_string(),
        repo,
        commit: info.sha,
        config,
        config_json: r.config,
        headers: r.headers,
        fetched_bytes: r.fetched_bytes,
        stored_bytes: r.stored_bytes,
    })
}

/// A PEFT adapter from a Hub repo (optionally a subfolder of it): `adapter_config.json` and
/// `adapter_model.safetensors`, as `PeftModel.from_pretrained(model, repo, subfolder=…)` reads.
pub async fn fetch_adapter(
    src: &Source,
    repo: &str,
    subfolder: &str,
) -> Result<(AdapterConfig, Vec<u8>), AppError> {
    let repo = RepoRef::parse(repo.trim(), None)?;
    let sub = subfolder.trim().trim_matches('/');
    let path = |f: &str| {
        if sub.is_empty() {
            f.to_string()
        } else {
            format!("{sub}/{f}")
        }
    };
    let endpoint = src.endpoint.trim();
    let cfg = get(
        &resolve_url(endpoint, &repo, &path("adapter_config.json")),
        src.token(),
        None,
    )
    .await?;
    let cfg = AdapterConfig::from_json(&cfg)?;
    let weights = get(
        &resolve_url(endpoint, &repo, &path("adapter_model.safetensors")),
        src.token(),
        None,
    )
    .await?;
    Ok((cfg, weights))
}
