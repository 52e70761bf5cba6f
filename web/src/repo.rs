//! A repo on the Hub (or a mirror) as the page reads it: the repo info, then the core's
//! header-only read (config.json and the safetensors headers, or a GGUF file's header, a few
//! kilobytes), and a PEFT adapter from any repo and subfolder.

use hubscope_core::ModelConfig;
use hubscope_core::checkpoint::{View, view};
use hubscope_core::gguf::{GgufHeader, RangeReader, choose, read_gguf_header};
use hubscope_core::hub::{RepoInfo, RepoReader, RepoRef, info_url, read_repo_headers, resolve_url};
use hubscope_core::lora::AdapterConfig;
use hubscope_core::safetensors::FileHeader;

use crate::error::AppError;
use crate::fetch::get;

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub endpoint: String,
    pub repo: String,
    pub revision: String,
    /// The GGUF file among several (`file` URL key); empty: the only one.
    pub file: String,
    pub token: String,
}

impl Source {
    pub fn token(&self) -> Option<&str> {
        Some(self.token.as_str()).filter(|t| !t.is_empty())
    }
}

/// What the header-only read found.
#[derive(Clone)]
pub enum Checkpoint {
    /// A family hubscope runs, in float weights: the page can load and run it.
    Runs {
        config: ModelConfig,
        /// config.json as served (the model is built from the same bytes).
        config_json: Vec<u8>,
        headers: Vec<FileHeader>,
    },
    /// Any other architecture, or a quantized checkpoint: shown from its tensor names.
    Names {
        model_type: String,
        quantized: Option<String>,
        config_json: Vec<u8>,
        headers: Vec<FileHeader>,
    },
    /// A GGUF file: shown from its header; run (dequantized) when it is of a family hubscope
    /// runs from GGUF (`config`, from the header's metadata).
    Gguf {
        file: String,
        header: GgufHeader,
        config: Option<Box<ModelConfig>>,
    },
}

/// A repo read header-only: commit and checkpoint headers.
#[derive(Clone)]
pub struct RepoView {
    pub endpoint: String,
    pub repo: RepoRef,
    pub commit: String,
    pub checkpoint: Checkpoint,
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

    /// The config of a model the page can run; otherwise why not.
    pub fn runnable(&self) -> Result<&ModelConfig, AppError> {
        match &self.checkpoint {
            Checkpoint::Runs { config, .. } => Ok(config),
            Checkpoint::Gguf {
                config: Some(c), ..
            } => Ok(c),
            Checkpoint::Names {
                model_type,
                quantized: None,
                ..
            } => Err(hubscope_core::Error::UnsupportedModelType(model_type.clone()).into()),
            Checkpoint::Names {
                quantized: Some(q), ..
            } => Err(AppError::Model(format!(
                "this checkpoint is quantized ({q}): hubscope runs F32, F16 and BF16 safetensors; its Structure and Memory tabs show it from the headers"
            ))),
            // Why not, as loading would say it.
            Checkpoint::Gguf { header, .. } => Err(match config_of_gguf(header) {
                Err(e) => e,
                Ok(_) => AppError::Model("GGUF: no config".into()),
            }),
        }
    }

    /// The model_type or GGUF architecture.
    pub fn kind(&self) -> String {
        match &self.checkpoint {
            Checkpoint::Runs { config, .. } => config.model_type.clone(),
            Checkpoint::Names {
                model_type,
                quantized,
                ..
            } => match quantized {
                Some(q) => format!("{model_type} ({q})"),
                None => model_type.clone(),
            },
            Checkpoint::Gguf { file, header, .. } => format!(
                "{} · {file} ({})",
                header.architecture().unwrap_or("unknown"),
                header.quantization().unwrap_or_default()
            ),
        }
    }
}

/// The config a GGUF file's metadata stands for (the core's mapping, as loading uses it).
fn config_of_gguf(h: &GgufHeader) -> Result<ModelConfig, AppError> {
    let config = hubscope_core::gguf_model::config_json(h)?;
    Ok(ModelConfig::from_json(config.to_string().as_bytes())?)
}

/// One file of a pinned repo as the core's range reader (a GGUF header).
struct FileRanges<'a> {
    url: String,
    token: Option<&'a str>,
}

impl RangeReader for FileRanges<'_> {
    type Error = AppError;
    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, AppError> {
        if end <= start {
            return Ok(vec![]);
        }
        Ok(get(&self.url, self.token, Some((start, end - 1))).await?)
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
    let files = info.files();
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let has_st = names.iter().any(|n| n.ends_with(".safetensors"));
    let file = Some(src.file.trim()).filter(|f| !f.is_empty());
    if let Some(f) = choose(&names, file, has_st, &repo.id)? {
        let size = files.iter().find(|(n, _)| *n == f).and_then(|(_, s)| *s);
        let reader = FileRanges {
            url: resolve_url(endpoint, &pinned, &f),
            token: src.token(),
        };
        let r = read_gguf_header(&reader, &f, size).await?;
        let stored = r.header.tensors.iter().map(|t| t.bytes).sum();
        let config = config_of_gguf(&r.header).ok().map(Box::new);
        return Ok(RepoView {
            endpoint: endpoint.to_string(),
            repo,
            commit: info.sha,
            checkpoint: Checkpoint::Gguf {
                file: f,
                header: r.header,
                config,
            },
            fetched_bytes: r.bytes_read,
            stored_bytes: stored,
        });
    }
    let r = read_repo_headers(
        &PageReader {
            endpoint,
            repo: &pinned,
            token: src.token(),
        },
        &repo.id,
        &files,
    )
    .await?;
    let checkpoint = match view(&r.config, &r.headers)? {
        View::Runs(config) => {
            // Fails here, before any download, for a checkpoint whose tensors do not fit.
            hubscope_core::load::plan_load(&config, &r.headers)?;
            Checkpoint::Runs {
                config: *config,
                config_json: r.config,
                headers: r.headers,
            }
        }
        View::Names {
            model_type,
            quantized,
        } => Checkpoint::Names {
            model_type,
            quantized,
            config_json: r.config,
            headers: r.headers,
        },
    };
    Ok(RepoView {
        endpoint: endpoint.to_string(),
        repo,
        commit: info.sha,
        checkpoint,
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
