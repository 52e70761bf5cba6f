//! Hugging Face Hub addressing shared by the native binary and the browser: repo ids with an
//! optional `@revision`, and the URLs of the Hub's file and API endpoints (also served by
//! `hubscope serve` and mirrors such as hf-mirror.com).

use crate::error::{Error, Result};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// `org/name` or `name`, at a revision (branch, tag or commit; default `main`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub id: String,
    pub revision: String,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 96
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !s.starts_with(['-', '.'])
}

impl RepoRef {
    /// Parse `org/name[@revision]`; `revision` (e.g. from `--revision`) wins over `@`.
    pub fn parse(s: &str, revision: Option<&str>) -> Result<Self> {
        let (id, at) = match s.split_once('@') {
            Some((id, rev)) => (id, Some(rev)),
            None => (s, None),
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
            return Err(Error::Invalid(format!(
                "`{s}` is not a Hub repo id (expected `org/name`, optionally `@revision`)"
            )));
        }
        let revision = revision.or(at).unwrap_or("main");
        if revision.is_empty() || revision.contains("..") || revision.starts_with('/') {
            return Err(Error::Invalid(format!(
                "`{revision}` is not a valid revision"
            )));
        }
        Ok(RepoRef {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The folder name the shared cache uses: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.id.replace('/', "--"))
    }
}

/// Percent-encode one path segment or query value (RFC 3986 unreserved kept).
pub fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encode a file path, keeping its `/` separators.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

fn base(endpoint: &str) -> &str {
    endpoint.trim_end_matches('/')
}

/// `{endpoint}/{repo}/resolve/{revision}/{file}`: a file's bytes (HEAD gives ETag and commit).
pub fn resolve_url(endpoint: &str, repo: &RepoRef, file: &str) -> String {
    format!(
        "{}/{}/resolve/{}/{}",
        base(endpoint),
        repo.id,
        encode_component(&repo.revision),
        encode_path(file)
    )
}

/// `{endpoint}/api/models/{repo}/revision/{revision}`: commit `sha` and `siblings`.
pub fn info_url(endpoint: &str, repo: &RepoRef) -> String {
    format!(
        "{}/api/models/{}/revision/{}",
        base(endpoint),
        repo.id,
        encode_component(&repo.revision)
    )
}

/// An LFS file's pointer in the repo info.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Lfs {
    pub size: u64,
}

/// A file of the repo as the info lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

/// What [`info_url`] answers: the commit and the files.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoInfo {
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

impl RepoInfo {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::json("repo info", e))
    }

    /// (file name, size) of every file; the size is the LFS object's for LFS files.
    pub fn files(&self) -> Vec<(String, Option<u64>)> {
        self.siblings
            .iter()
            .map(|s| {
                (
                    s.rfilename.clone(),
                    s.lfs.as_ref().map(|l| l.size).or(s.size),
                )
            })
            .collect()
    }
}

/// `{endpoint}/api/models/{repo}/tree/{revision}`: files with sizes and LFS hashes.
pub fn tree_url(endpoint: &str, repo: &RepoRef) -> String {
    format!(
        "{}/api/models/{}/tree/{}?recursive=true",
        base(endpoint),
        repo.id,
        encode_component(&repo.revision)
    )
}

/// Normalize an ETag header value: drop `W/` and quotes.
pub fn clean_etag(v: &str) -> String {
    v.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

/// A 64-hex-digit ETag is the sha256 of an LFS file's content; git blob ids have 40.
pub fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())
}

/// An ETag fit to name a file in the cache: the Hub sends a sha256 (LFS, Xet) or a git blob id;
/// anything with a path separator, a dot segment or a NUL never becomes a path.
pub fn is_safe_etag(etag: &str) -> bool {
    !etag.is_empty()
        && etag.len() <= 128
        && etag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A git commit id as the Hub reports one: 40 hex digits.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// A file name from a server, fit to become a path under a snapshot or local folder: relative,
/// `/`-separated, no empty, `.` or `..` segments, no backslash, NUL or drive prefix.
pub fn is_safe_repo_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 4096
        && !p.contains(['\\', '\0'])
        && p.as_bytes().get(1) != Some(&b':')
        && p.split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// What to tell the user for an HTTP error status from the Hub.
pub fn status_hint(status: u16, repo: &RepoRef, what: &str) -> String {
    match status {
        401 | 403 => format!(
            "{what}: HTTP {status}: {} is gated or private: accept its terms on the Hub and pass a token (--token or HF_TOKEN)",
            repo.id
        ),
        404 => format!(
            "{what}: HTTP 404: no repo `{}` at revision `{}` (check the repo id and revision; mirrors need HF_ENDPOINT)",
            repo.id, repo.revision
        ),
        429 => format!("{what}: HTTP 429: rate limited by the Hub; try again later"),
        s => format!("{what}: HTTP {s} from the Hub"),
    }
}

/// How a caller reads one repo at a pinned commit: the native client or the page's `fetch`.
/// `range` is inclusive, as in an HTTP `Range: bytes=a-b` header.
#[allow(async_fn_in_trait)]
pub trait RepoReader {
    type Error: From<Error>;
    async fn get(
        &self,
        file: &str,
        range: Option<(u64, u64)>,
    ) -> std::result::Result<Vec<u8>, Self::Error>;
}

/// config.json and every safetensors header of a repo, the weight data never touched.
pub struct RepoHeaders {
    pub config: Vec<u8>,
    pub headers: Vec<crate::safetensors::FileHeader>,
    /// Bytes of safetensors files read (8-byte lengths + JSON headers).
    pub header_bytes: u64,
    /// Bytes of every read (config, index, headers).
    pub fetched_bytes: u64,
    /// Tensor data the checkpoint stores.
    pub stored_bytes: u64,
}

/// Read a repo header-only, the same way natively and in the browser: config.json, the shard
/// index if there is one, then per shard two Range reads (the 8-byte length, the JSON header).
/// `files` lists the repo's files with their sizes (from the repo info).
pub async fn read_repo_headers<R: RepoReader>(
    reader: &R,
    repo_id: &str,
    files: &[(String, Option<u64>)],
) -> std::result::Result<RepoHeaders, R::Error> {
    use crate::safetensors::{FileHeader, ShardIndex, header_len};
    let has = |n: &str| files.iter().any(|(f, _)| f == n);
    if !has("config.json") {
        return Err(Error::Invalid(format!("{repo_id}: the repo has no config.json")).into());
    }
    let config = reader.get("config.json", None).await?;
    let mut fetched = config.len() as u64;
    let shards = if has("model.safetensors.index.json") {
        let idx = reader.get("model.safetensors.index.json", None).await?;
        fetched += idx.len() as u64;
        ShardIndex::from_json(&idx)?.shards()
    } else if has("model.safetensors") {
        vec!["model.safetensors".to_string()]
    } else {
        return Err(Error::Invalid(format!(
            "{repo_id}: no model.safetensors or model.safetensors.index.json in the repo"
        ))
        .into());
    };
    let (mut headers, mut header_bytes, mut stored) = (vec![], 0u64, 0u64);
    for s in shards {
        let size = files.iter().find(|(f, _)| *f == s).and_then(|(_, n)| *n);
        let mut buf = reader.get(&s, Some((0, 7))).await?;
        let n = header_len(&s, &buf)? as u64;
        buf.extend_from_slice(&reader.get(&s, Some((8, 8 + n - 1))).await?);
        header_bytes += buf.len() as u64;
        let h = FileHeader::parse(&s, &buf, size)?;
        stored += h.data_len as u64;
        headers.push(h);
    }
    Ok(RepoHeaders {
        config,
        headers,
        header_bytes,
        fetched_bytes: fetched + header_bytes,
        stored_bytes: stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_urls() {
        let r = RepoRef::parse("Qwen/Qwen2.5-0.5B-Instruct@v1.0", None).unwrap();
        assert_eq!(r.revision, "v1.0");
        assert_eq!(r.cache_folder(), "models--Qwen--Qwen2.5-0.5B-Instruct");
        assert_eq!(
            resolve_url("https://hf-mirror.com/", &r, "sub dir/model.safetensors"),
            "https://hf-mirror.com/Qwen/Qwen2.5-0.5B-Instruct/resolve/v1.0/sub%20dir/model.safetensors"
        );
        assert_eq!(RepoRef::parse("gpt2", Some("abc")).unwrap().revision, "abc");
        for bad in ["../x", "a/b/c", "", "a/..", "/abs", "a b/c"] {
            assert!(RepoRef::parse(bad, None).is_err(), "{bad}");
        }
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert!(is_safe_etag("0123abcdef") && is_safe_etag(&"a".repeat(64)));
        for bad in [
            "",
            "../x",
            "a/b",
            "a\0b",
            ".",
            "..",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(!is_safe_etag(bad), "{bad:?}");
        }
        assert!(is_commit(&"ab12".repeat(10)) && !is_commit("../../x") && !is_commit("main"));
        assert!(is_safe_repo_path("onnx/model.onnx") && is_safe_repo_path(".gitattributes"));
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "../x",
            "a//b",
            "a\\b",
            "x\0",
            "C:/x",
            "a/./b",
            "a/",
        ] {
            assert!(!is_safe_repo_path(bad), "{bad:?}");
        }
    }
}
