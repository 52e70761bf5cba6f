//! HTTP to the Hub (or a mirror, or `hubscope serve`): repo info through hf-hub, and our own
//! HEAD and ranged GET with retries, which hf-hub lacks.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Repo, RepoType};
use hubscope_core::hub::{RepoInfo, RepoRef, clean_etag, is_safe_etag, resolve_url, status_hint};

/// Where and as whom to talk to the Hub: `--endpoint`/`HF_ENDPOINT`, `--token`/`HF_TOKEN`.
#[derive(Clone)]
pub struct HubClient {
    pub endpoint: String,
    token: Option<String>,
    api: Api,
    agent: ureq::Agent,
    retry_base: Duration,
    pub max_attempts: u32,
}

/// What a HEAD on a file's resolve URL tells.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// sha256 for LFS files (`X-Linked-Etag`), the git blob id otherwise.
    pub etag: String,
    pub size: u64,
}

/// An HTTP failure worth telling apart.
#[derive(Debug)]
pub enum Failure {
    Status(u16, Option<u64>),
    Transport(String),
}

fn retry_after(r: &ureq::Response) -> Option<u64> {
    r.header("Retry-After").and_then(|v| v.trim().parse().ok())
}

impl HubClient {
    pub fn new(endpoint: Option<String>, token: Option<String>) -> Result<Self> {
        let endpoint = endpoint
            .or_else(|| std::env::var("HF_ENDPOINT").ok())
            .unwrap_or_else(|| hubscope_core::hub::DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let token = token
            .or_else(|| std::env::var("HF_TOKEN").ok())
            .filter(|t| !t.is_empty());
        let api = ApiBuilder::new()
            .with_endpoint(endpoint.clone())
            .with_token(token.clone())
            .with_progress(false)
            .build()
            .context("cannot set up the Hub client")?;
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(20))
            .timeout_read(Duration::from_secs(60))
            .user_agent(concat!("hubscope/", env!("CARGO_PKG_VERSION")))
            .build();
        let retry_base = Duration::from_millis(
            std::env::var("HUBSCOPE_RETRY_BASE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000),
        );
        Ok(HubClient {
            endpoint,
            token,
            api,
            agent,
            retry_base,
            max_attempts: 6,
        })
    }

    fn auth(&self, req: ureq::Request) -> ureq::Request {
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// Run `op` until it succeeds, retrying connection errors, 5xx and 429 with exponential
    /// backoff (honouring `Retry-After`).
    pub fn retrying<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> std::result::Result<T, Failure>,
    ) -> std::result::Result<T, Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op() {
                Ok(v) => return Ok(v),
                Err(f) => {
                    let wait = match &f {
                        Failure::Status(s, ra) if *s == 429 || *s >= 500 => ra
                            .map(Duration::from_secs)
                            .unwrap_or(self.retry_base * 2u32.pow(attempt - 1)),
                        Failure::Transport(_) => self.retry_base * 2u32.pow(attempt - 1),
                        _ => return Err(f),
                    };
                    if attempt >= self.max_attempts {
                        return Err(f);
                    }
                    let wait = wait.min(Duration::from_secs(60));
                    eprintln!(
                        "{what}: {}; retrying in {:.1} s",
                        describe(&f),
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Commit and files of a repo at a revision (`/api/models/{id}/revision/{rev}?blobs=true`).
    pub fn info(&self, repo: &RepoRef) -> Result<RepoInfo> {
        let api_repo = self.api.repo(Repo::with_revision(
            repo.id.clone(),
            RepoType::Model,
            repo.revision.clone(),
        ));
        let what = format!("{}@{}", repo.id, repo.revision);
        let body = self
            .retrying(&what, || {
                let req = api_repo.info_request().query("blobs", "true");
                match req.call() {
                    Ok(r) => r
                        .into_string()
                        .map_err(|e| Failure::Transport(e.to_string())),
                    Err(ureq::Error::Status(s, r)) => Err(Failure::Status(s, retry_after(&r))),
                    Err(ureq::Error::Transport(t)) => Err(Failure::Transport(t.to_string())),
                }
            })
            .map_err(|f| self.failure(f, repo, &what))?;
        RepoInfo::from_json(body.as_bytes())
            .with_context(|| format!("{what}: the Hub's repo info is not valid JSON"))
    }

    /// The error message for a final failure.
    pub fn failure(&self, f: Failure, repo: &RepoRef, what: &str) -> anyhow::Error {
        match f {
            Failure::Status(s, _) => anyhow!("{}", status_hint(s, repo, what)),
            Failure::Transport(t) => anyhow!("{what}: cannot reach {} ({t})", self.endpoint),
        }
    }

    /// HEAD a file: its ETag (the `X-Linked-Etag` of an LFS redirect wins), size and commit.
    /// A redirect without the LFS headers (a renamed repo) is followed, as huggingface_hub
    /// does; the token goes only to the endpoint's own origin.
    pub fn head(&self, repo: &RepoRef, file: &str) -> Result<FileMeta> {
        let what = format!("{}: {file}", repo.id);
        let resp = self
            .retrying(&what, || {
                let mut url = resolve_url(&self.endpoint, repo, file);
                for _hop in 0..MAX_REDIRECTS {
                    let req = self.request("HEAD", &url)?;
                    let r = match req.call() {
                        Ok(r) => r,
                        Err(ureq::Error::Status(s, r)) => {
                            return Err(Failure::Status(s, retry_after(&r)));
                        }
                        Err(ureq::Error::Transport(t)) => {
                            return Err(Failure::Transport(t.to_string()));
                        }
                    };
                    // A redirect to a CDN carries the file's metadata on the 3xx itself.
                    if !(300..400).contains(&r.status()) || r.header("X-Linked-Etag").is_some() {
                        return Ok(r);
                    }
                    url = self.next_hop(&url, &r)?;
                }
                Err(Failure::Transport("too many redirects".into()))
            })
            .map_err(|f| self.failure(f, repo, &what))?;
        let raw = resp
            .header("X-Linked-Etag")
            .or_else(|| resp.header("ETag"))
            .with_context(|| format!("{what}: the server sent no ETag"))?;
        let etag = clean_etag(raw);
        if !is_safe_etag(&etag) {
            bail!(
                "{what}: the server sent an unusable ETag {raw:?} (expected letters, digits, - or _)"
            );
        }
        let size = resp
            .header("X-Linked-Size")
            .or_else(|| resp.header("Content-Length"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{what}: the server sent no size"))?;
        Ok(FileMeta { etag, size })
    }

    /// A request to `url`, with the token only when `url` is on the endpoint's own origin
    /// (scheme, host and port compared after parsing, never as a string prefix).
    fn request(&self, method: &str, url: &str) -> std::result::Result<ureq::Request, Failure> {
        let req = self
            .agent
            .request(method, url)
            .set("Accept-Encoding", "identity");
        Ok(if same_origin(&self.endpoint, url) {
            self.auth(req)
        } else {
            req
        })
    }

    /// Where a 3xx response points, resolved against the URL that answered it.
    fn next_hop(&self, url: &str, r: &ureq::Response) -> std::result::Result<String, Failure> {
        let loc = r
            .header("Location")
            .ok_or_else(|| Failure::Transport(format!("HTTP {} without a Location", r.status())))?;
        let base = url::Url::parse(url).map_err(|e| Failure::Transport(format!("{url}: {e}")))?;
        let next = base
            .join(loc)
            .map_err(|e| Failure::Transport(format!("bad redirect Location {loc:?}: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(Failure::Transport(format!(
                "refusing a redirect to {next} (not http or https)"
            )));
        }
        Ok(next.to_string())
    }

    /// GET a file's resolve URL with an optional `Range` header value, following redirects
    /// (the Hub answers LFS and Xet files with a 302 to its CDN on another host; the token
    /// goes only to the endpoint, never to a host it redirects to).
    fn get(
        &self,
        repo: &RepoRef,
        file: &str,
        range: Option<&str>,
    ) -> std::result::Result<ureq::Response, Failure> {
        let mut url = resolve_url(&self.endpoint, repo, file);
        for _hop in 0..MAX_REDIRECTS {
            let mut req = self.request("GET", &url)?;
            if let Some(r) = range {
                req = req.set("Range", r);
            }
            match req.call() {
                // With automatic redirects off, ureq hands a 3xx back as a success.
                Ok(r) if (300..400).contains(&r.status()) => url = self.next_hop(&url, &r)?,
                Ok(r) => return Ok(r),
                Err(ureq::Error::Status(s, r)) => return Err(Failure::Status(s, retry_after(&r))),
                Err(ureq::Error::Transport(t)) => return Err(Failure::Transport(t.to_string())),
            }
        }
        Err(Failure::Transport("too many redirects".into()))
    }

    /// GET a file from byte `from` (a Range request when `from > 0`). Returns whether the
    /// server honoured the range (206) and the body reader.
    pub fn get_from(
        &self,
        repo: &RepoRef,
        file: &str,
        from: u64,
    ) -> std::result::Result<(bool, Box<dyn Read + Send>), Failure> {
        let range = (from > 0).then(|| format!("bytes={from}-"));
        let r = self.get(repo, file, range.as_deref())?;
        Ok((r.status() == 206, Box::new(r.into_reader())))
    }

    /// GET a byte range `[start, end]` (inclusive) of a file, or a whole small file.
    pub fn get_bytes(
        &self,
        repo: &RepoRef,
        file: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<u8>> {
        let what = format!("{}: {file}", repo.id);
        let header = range.map(|(a, b)| format!("bytes={a}-{b}"));
        self.retrying(&what, || {
            let resp = self.get(repo, file, header.as_deref())?;
            if range.is_some() && resp.status() != 206 {
                return Err(Failure::Transport(
                    "the server ignored the Range request".into(),
                ));
            }
            let mut buf = vec![];
            resp.into_reader()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::Transport(e.to_string()))?;
            Ok(buf)
        })
        .map_err(|f| self.failure(f, repo, &what))
    }
}

/// How many redirects one request may follow (the Hub uses one, a renamed repo two).
const MAX_REDIRECTS: usize = 5;

/// Do two URLs share scheme, host and port (the browser's notion of an origin)?
pub fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

pub fn describe(f: &Failure) -> String {
    match f {
        Failure::Status(s, _) => format!("HTTP {s}"),
        Failure::Transport(t) => t.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn origins_are_compared_parsed() {
        assert!(same_origin(
            "https://huggingface.co",
            "https://huggingface.co/a/resolve/main/x"
        ));
        assert!(same_origin(
            "https://huggingface.co",
            "https://huggingface.co:443/x"
        ));
        assert!(!same_origin(
            "https://huggingface.co",
            "https://huggingface.co.evil.example/x"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:4180",
            "http://127.0.0.1:41801/x"
        ));
        assert!(!same_origin(
            "https://huggingface.co",
            "http://huggingface.co/x"
        ));
        assert!(!same_origin(
            "https://huggingface.co",
            "https://cdn-lfs.hf.co/x"
        ));
        assert!(!same_origin("https://huggingface.co", "not a url"));
    }
}
