//! The Hub side against `hubscope serve` on 127.0.0.1: Python huggingface_hub compatibility
//! both ways, resume after cuts and kill -9, retries, checksum refusal, header-only inspect,
//! path safety, errors, and the cache commands.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_hubscope");

/// `hubscope serve` over the fixtures as `fx/<name>`, on a free port; killed on drop.
use common::Server;

fn hubscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env("HUBSCOPE_RETRY_BASE_MS", "50");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", err(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// `hubscope download REPO --endpoint <server> --json` plus `extra`, which must succeed.
fn download_json(s: &Server, repo: &str, extra: &[&str]) -> Value {
    let mut args = vec!["download", repo, "--endpoint", &s.url, "--json"];
    args.extend_from_slice(extra);
    json(&hubscope(&args, &[]))
}

/// The per-file `status` of a `download --json` report.
fn statuses(v: &Value) -> Vec<&str> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect()
}

fn same_bytes(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{} vs {}",
        a.display(),
        b.display()
    );
}

fn fixture_files(name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(common::fixtures().join(name))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn python_huggingface_hub_downloads_from_serve_and_reads_our_cache() {
    let s = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // Python downloads from hubscope serve: byte-identical files.
    let py_cache = tmp.path().join("py-cache");
    let o = Command::new(common::python())
        .args(["-c", "import sys; from huggingface_hub import snapshot_download as s; print(s(sys.argv[1], endpoint=sys.argv[2], cache_dir=sys.argv[3]))", "fx/tiny-llama", &s.url, py_cache.to_str().unwrap()])
        .env_remove("HF_ENDPOINT")
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", err(&o));
    let folder = PathBuf::from(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    for f in fixture_files("tiny-llama") {
        same_bytes(
            &folder.join(&f),
            &common::fixtures().join("tiny-llama").join(&f),
        );
    }
    // hubscope finds everything Python put in the cache: nothing is downloaded again.
    let v = download_json(
        &s,
        "fx/tiny-llama",
        &["--cache-dir", py_cache.to_str().unwrap()],
    );
    assert!(statuses(&v).iter().all(|s| *s == "cached"), "{v}");
    assert_eq!(PathBuf::from(v["folder"].as_str().unwrap()), folder);

    // hubscope downloads into a fresh cache; Python, offline, finds every file there.
    let cache = tmp.path().join("our-cache");
    let v = download_json(
        &s,
        "fx/tiny-qwen3",
        &["--cache-dir", cache.to_str().unwrap()],
    );
    assert!(statuses(&v).iter().all(|s| *s == "downloaded"), "{v}");
    let script = "import sys\nfrom huggingface_hub import try_to_load_from_cache as t\nfor f in sys.argv[3:]:\n  p = t(sys.argv[1], f, cache_dir=sys.argv[2])\n  assert isinstance(p, str), (f, p)\n  print(p)";
    let mut args = vec!["-c", script, "fx/tiny-qwen3", cache.to_str().unwrap()];
    let files = fixture_files("tiny-qwen3");
    args.extend(files.iter().map(String::as_str));
    let o = Command::new(common::python())
        .args(&args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "python offline lookup: {}", err(&o));
    let found = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        found.lines().count(),
        files.len(),
        "python found every file: {found}"
    );
    for (line, f) in found.lines().zip(&files) {
        same_bytes(
            Path::new(line),
            &common::fixtures().join("tiny-qwen3").join(f),
        );
    }
    // Layout: blobs named by ETag, snapshot entries are relative symlinks, refs/main = commit.
    let root = cache.join("models--fx--tiny-qwen3");
    let commit = std::fs::read_to_string(root.join("refs/main")).unwrap();
    assert_eq!(commit, v["commit"].as_str().unwrap());
    let link = std::fs::read_link(
        root.join("snapshots")
            .join(&commit)
            .join("model.safetensors"),
    )
    .unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());

    // Offline, hubscope answers from the cache alone; the last line is the folder.
    let o = hubscope(
        &[
            "download",
            "fx/tiny-qwen3",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.trim().lines().last().unwrap(),
        root.join("snapshots").join(&commit).to_str().unwrap()
    );

    // A repo id runs like a folder: generate downloads (nothing new here) and runs.
    let o = hubscope(
        &[
            "generate",
            "fx/tiny-qwen3",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--prompt",
            "hi",
            "--max-new-tokens",
            "2",
            "--temperature",
            "0",
        ],
        &[("HF_ENDPOINT", &s.url)],
    );
    assert!(o.status.success(), "{}", err(&o));

    // cache ls / rm.
    let ls = json(&hubscope(
        &[
            "cache",
            "ls",
            "--json",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    ));
    let repo = &ls["repos"][0];
    assert_eq!(repo["repo_id"], "fx/tiny-qwen3");
    assert!(repo["size_on_disk"].as_u64().unwrap() > 39_000_000);
    assert_eq!(repo["revisions"][0]["refs"][0], "main");
    let o = hubscope(
        &[
            "cache",
            "rm",
            "fx/tiny-qwen3",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success() && !root.exists(), "{}", err(&o));
}

#[test]
fn local_dir_plain_files_include_exclude_dry_run() {
    let s = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("local");
    let d = dir.to_str().unwrap();
    let v = download_json(&s, "fx/tiny-qwen2", &["--local-dir", d, "--dry-run"]);
    assert!(statuses(&v).iter().all(|s| *s == "planned"));
    assert!(!dir.join("config.json").exists(), "dry run writes nothing");
    let v = download_json(
        &s,
        "fx/tiny-qwen2",
        &[
            "--local-dir",
            d,
            "--include",
            "*.json",
            "--exclude",
            "reference*",
        ],
    );
    let got: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            "config.json",
            "generation_config.json",
            "summary.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    for f in got {
        assert!(!std::fs::symlink_metadata(dir.join(f)).unwrap().is_symlink());
        same_bytes(&dir.join(f), &common::fixtures().join("tiny-qwen2").join(f));
    }
    let v = download_json(
        &s,
        "fx/tiny-qwen2",
        &["--local-dir", d, "--include", "*.json"],
    );
    let cached = statuses(&v).iter().filter(|s| **s == "cached").count();
    assert_eq!(cached, 5, "{v}");
}

#[test]
fn cut_connections_and_5xx_429_end_byte_identical() {
    // Cut after 3 MB the first two times, then answer 500 and 429 (Retry-After: 1).
    let s = Server::start(&[
        "--fault-cut-after",
        "3000000",
        "--fault-times",
        "2",
        "--fault-status",
        "500,429",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let t0 = Instant::now();
    let o = hubscope(
        &[
            "download",
            "fx/tiny-qwen2",
            "--endpoint",
            &s.url,
            "--local-dir",
            dir.to_str().unwrap(),
            "--include",
            "model.safetensors",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    same_bytes(
        &dir.join("model.safetensors"),
        &common::fixtures().join("tiny-qwen2/model.safetensors"),
    );
    let e = err(&o);
    assert!(
        e.contains("HTTP 500") && e.contains("HTTP 429") && e.contains("retrying"),
        "{e}"
    );
}

#[test]
fn checksum_mismatch_is_refused_and_nothing_is_left() {
    let s = Server::start(&["--fault-corrupt"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    let o = hubscope(
        &[
            "download",
            "fx/tiny-llama",
            "--endpoint",
            &s.url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--include",
            "model.safetensors",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("sha256 mismatch") && e.contains("model.safetensors"),
        "{e}"
    );
    let blobs: Vec<_> = std::fs::read_dir(cache.join("models--fx--tiny-llama/blobs"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "no blob and no partial left: {blobs:?}");
    assert!(
        !cache.join("models--fx--tiny-llama/snapshots").exists()
            || std::fs::read_dir(cache.join("models--fx--tiny-llama/snapshots"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn kill_dash_9_mid_file_then_resume_fetches_less() {
    // 4 MB/s: the 19.6 MB file takes about 5 s, long enough to kill the downloader mid-file.
    let s = Server::start(&["--fault-rate", "4000000"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    let args = [
        "download",
        "fx/tiny-qwen2",
        "--endpoint",
        &s.url,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--include",
        "model.safetensors",
        "--json",
    ];
    let mut child = Command::new(BIN)
        .args(args)
        .env("HUBSCOPE_RETRY_BASE_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs = cache.join("models--fx--tiny-qwen2/blobs");
    let t0 = Instant::now();
    let partial_len = loop {
        let len = std::fs::read_dir(&blobs)
            .ok()
            .and_then(|mut rd| {
                rd.find_map(|e| {
                    e.ok()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
                })
            })
            .and_then(|e| e.metadata().ok())
            .map_or(0, |m| m.len());
        if len > 4_000_000 {
            break len;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no partial file appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let key = "fx/tiny-qwen2/model.safetensors";
    let before = s.sent(key);
    let v = json(&hubscope(&args, &[]));
    let second = s.sent(key) - before;
    let size = std::fs::metadata(common::fixtures().join("tiny-qwen2/model.safetensors"))
        .unwrap()
        .len();
    assert_eq!(v["files"][0]["status"], "resumed");
    assert!(
        second < size && second <= size - partial_len + 1_000_000,
        "second run fetched {second} of {size} bytes (partial was {partial_len})"
    );
    same_bytes(
        Path::new(v["files"][0]["path"].as_str().unwrap()),
        &common::fixtures().join("tiny-qwen2/model.safetensors"),
    );
}

#[test]
fn header_only_inspect_reads_under_64_kib_of_weights() {
    let s = Server::start(&[]);
    for name in ["tiny-qwen2", "tiny-qwen3", "tiny-llama"] {
        let key = format!("fx/{name}/model.safetensors");
        let before = s.sent(&key);
        let v = json(&hubscope(
            &[
                "inspect",
                &format!("fx/{name}"),
                "--endpoint",
                &s.url,
                "--json",
            ],
            &[],
        ));
        let sent = s.sent(&key) - before;
        assert!(
            sent > 0 && sent < 64 * 1024,
            "{name}: {sent} bytes of weights"
        );
        let summary: Value = serde_json::from_slice(
            &std::fs::read(common::fixtures().join(name).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(v["total_parameters"], summary["parameter_count"]);
        assert_eq!(v["header_bytes_read"].as_u64().unwrap(), sent);
    }
    let o = hubscope(
        &["inspect", "fx/tiny-llama", "--endpoint", &s.url, "--plain"],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim_end(),
        std::fs::read_to_string(common::fixtures().join("tiny-llama/print_model.txt"))
            .unwrap()
            .trim_end()
    );
}

#[test]
fn errors_say_what_to_do() {
    let s = Server::start(&["--require-token", "sekret"]);
    let o = hubscope(&["inspect", "fx/tiny-llama", "--endpoint", &s.url], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("401") && err(&o).contains("token"),
        "{}",
        err(&o)
    );
    assert_eq!(err(&o).trim().lines().count(), 1);
    let o = hubscope(
        &[
            "inspect",
            "fx/tiny-llama",
            "--endpoint",
            &s.url,
            "--token",
            "sekret",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let o = hubscope(
        &["inspect", "fx/tiny-llama", "--endpoint", &s.url],
        &[("HF_TOKEN", "sekret")],
    );
    assert!(o.status.success(), "HF_TOKEN is honoured: {}", err(&o));
    let o = hubscope(
        &[
            "download",
            "fx/no-such-model",
            "--endpoint",
            &s.url,
            "--token",
            "sekret",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("404") && err(&o).contains("fx/no-such-model"),
        "{}",
        err(&o)
    );
    let o = hubscope(
        &[
            "download",
            "fx/tiny-llama@nope",
            "--endpoint",
            &s.url,
            "--token",
            "sekret",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("404") && err(&o).contains("nope"),
        "{}",
        err(&o)
    );
    // Nothing listening: connection errors are retried, then reported.
    let o = hubscope(
        &[
            "inspect",
            "fx/tiny-llama",
            "--endpoint",
            "http://127.0.0.1:9",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("cannot reach"), "{}", err(&o));
}

#[test]
fn serve_never_leaves_its_roots() {
    // A model folder with a symlink pointing outside it.
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let repo = tmp.path().join("models/org/m");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("config.json"), "{}").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, repo.join("leak.txt")).unwrap();
    let models = tmp.path().join("models");
    let mut child = Command::new(BIN)
        .args(["serve", "--models", models.to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let status = |path: &str| -> String {
        let o = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--path-as-is",
                &format!("{url}{path}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(status("/org/m/resolve/main/config.json"), "200");
    for bad in [
        "/org/m/resolve/main/../../../secret.txt",
        "/org/m/resolve/main/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/org/m/resolve/main/..%2f..%2f..%2fsecret.txt",
        "/org/m/resolve/main//etc/passwd",
        "/org/m/resolve/main/leak.txt",
        "/../secret.txt",
    ] {
        let code = status(bad);
        assert!(code == "400" || code == "404", "{bad}: {code}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Two free loopback ports where the second's URL starts with the first's
/// (`http://127.0.0.1:P` and `http://127.0.0.1:P1`): a token check by string prefix would
/// send the token to the second origin.
fn prefix_port_pair() -> (u16, u16) {
    for p in (2000u16..6553).step_by(37) {
        let q = p * 10 + 1;
        let a = std::net::TcpListener::bind(("127.0.0.1", p));
        let b = std::net::TcpListener::bind(("127.0.0.1", q));
        if a.is_ok() && b.is_ok() {
            return (p, q);
        }
    }
    panic!("no free port pair");
}

/// `serve` over the fixtures answering file requests of LFS files with a 302 to a second
/// origin (as huggingface.co redirects to its CDN), gated by a token.
fn cdn_server(extra: &[&str]) -> (Server, u16) {
    let (p, q) = prefix_port_pair();
    let models = format!("fx={}", common::fixtures().display());
    let q_arg = q.to_string();
    let mut args = vec!["--cdn-port", q_arg.as_str(), "--require-token", "sekret"];
    args.extend_from_slice(extra);
    (Server::start_with(&models, p, &args), q)
}

fn sha256_hex(p: &Path) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(std::fs::read(p).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn downloads_and_inspect_follow_cdn_redirects_and_the_token_stays_home() {
    // The first file body through the CDN is cut after 3 MB: the retry resumes with a Range
    // request, which the redirect must carry to the CDN.
    let (s, cdn_port) = cdn_server(&["--fault-cut-after", "3000000", "--fault-times", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    let o = hubscope(
        &[
            "download",
            "fx/tiny-qwen2",
            "--endpoint",
            &s.url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--json",
        ],
        &[("HF_TOKEN", "sekret")],
    );
    let v = json(&o);
    assert!(
        err(&o).contains("retrying"),
        "the cut was retried: {}",
        err(&o)
    );
    let weights = common::fixtures().join("tiny-qwen2/model.safetensors");
    let size = std::fs::metadata(&weights).unwrap().len();
    for f in v["files"].as_array().unwrap() {
        let name = f["file"].as_str().unwrap();
        same_bytes(
            Path::new(f["path"].as_str().unwrap()),
            &common::fixtures().join("tiny-qwen2").join(name),
        );
    }
    let stats = s.stats();
    assert!(stats["cdn_requests"].as_u64().unwrap() >= 2, "{stats}");
    assert_eq!(
        stats["cdn_requests_with_authorization"], 0,
        "the token must not follow the redirect to 127.0.0.1:{cdn_port}: {stats}"
    );
    // The resume asked the CDN for the rest only.
    let key = format!("cdn/{}", sha256_hex(&weights));
    let sent = s.sent(&key);
    assert!(
        sent >= size && sent < size + 1_000_000,
        "CDN sent {sent} bytes of {size}"
    );

    // Header-only inspect through the redirect: ranged GETs land on the CDN, < 64 KiB.
    let before = s.sent(&format!(
        "cdn/{}",
        sha256_hex(&common::fixtures().join("tiny-llama/model.safetensors"))
    ));
    let v = json(&hubscope(
        &["inspect", "fx/tiny-llama", "--endpoint", &s.url, "--json"],
        &[("HF_TOKEN", "sekret")],
    ));
    let sent = s.sent(&format!(
        "cdn/{}",
        sha256_hex(&common::fixtures().join("tiny-llama/model.safetensors"))
    )) - before;
    assert!(sent > 0 && sent < 64 * 1024, "{sent} bytes of weights");
    let summary: Value = serde_json::from_slice(
        &std::fs::read(common::fixtures().join("tiny-llama/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["total_parameters"], summary["parameter_count"]);

    // Python's huggingface_hub through the same redirects: the same files.
    let py_cache = tmp.path().join("py");
    let o = Command::new(common::python())
        .args(["-c", "import sys; from huggingface_hub import snapshot_download as s; print(s(sys.argv[1], endpoint=sys.argv[2], cache_dir=sys.argv[3], token='sekret'))", "fx/tiny-llama", &s.url, py_cache.to_str().unwrap()])
        .env_remove("HF_ENDPOINT")
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", err(&o));
    let folder = PathBuf::from(
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    same_bytes(
        &folder.join("model.safetensors"),
        &common::fixtures().join("tiny-llama/model.safetensors"),
    );
    assert_eq!(s.stats()["cdn_requests_with_authorization"], 0);
}

#[test]
fn empty_files_are_files() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("models/org/m");
    std::fs::create_dir_all(repo.join("pkg")).unwrap();
    std::fs::write(repo.join("config.json"), "{}").unwrap();
    std::fs::write(repo.join("README.md"), "").unwrap();
    std::fs::write(repo.join("pkg/__init__.py"), "").unwrap();
    let s = Server::start_with(tmp.path().join("models").to_str().unwrap(), 0, &[]);
    for target in ["--cache-dir", "--local-dir"] {
        let dir = tmp.path().join(target.trim_start_matches('-'));
        let v = download_json(&s, "org/m", &[target, dir.to_str().unwrap()]);
        assert_eq!(v["files"].as_array().unwrap().len(), 3, "{v}");
        for f in v["files"].as_array().unwrap() {
            let p = Path::new(f["path"].as_str().unwrap());
            let want = if f["file"] == "config.json" { 2 } else { 0 };
            assert_eq!(std::fs::metadata(p).unwrap().len(), want, "{}", p.display());
        }
        // And again: everything is cached, zero-byte files included.
        let v = download_json(&s, "org/m", &[target, dir.to_str().unwrap()]);
        assert!(statuses(&v).iter().all(|s| *s == "cached"), "{v}");
    }
}

/// A hostile Hub on 127.0.0.1: valid HTTP, poisoned values. `mode` picks the poison: the
/// commit, a file name, or an ETag that would become a path.
fn hostile_hub(mode: &'static str) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming().take(50) {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let n = c.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let commit = if mode == "commit" {
                "../../../../escape".to_string()
            } else {
                "ab".repeat(20)
            };
            let file = if mode == "filename" {
                "../../../../escape.txt"
            } else {
                "config.json"
            };
            let etag = if mode == "etag" {
                "../../../../escape"
            } else {
                "0123456789abcdef0123456789abcdef01234567"
            };
            let (head, body) = if req.contains("/api/models/") {
                let body = serde_json::json!({"sha": commit, "siblings": [{"rfilename": file, "size": 2}]}).to_string();
                (
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json".to_string(),
                    body,
                )
            } else {
                (
                    format!("HTTP/1.1 200 OK\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {commit}"),
                    "{}".to_string(),
                )
            };
            let body = if req.starts_with("HEAD") {
                String::new()
            } else {
                body
            };
            let len = if req.starts_with("HEAD") {
                2
            } else {
                body.len()
            };
            let _ = write!(
                c,
                "{head}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{body}"
            );
        }
    });
    url
}

/// Every path under `root`.
fn all_paths(root: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() && !e.path().is_symlink() {
            all_paths(&e.path(), out);
        }
    }
}

#[test]
fn server_values_become_paths_only_after_validation() {
    for (mode, says) in [
        ("commit", "commit"),
        ("filename", "unsafe file name"),
        ("etag", "ETag"),
    ] {
        let url = hostile_hub(mode);
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("a/b/c/cache");
        let local = tmp.path().join("a/b/c/local");
        for target in [
            ["--cache-dir", cache.to_str().unwrap()],
            ["--local-dir", local.to_str().unwrap()],
        ] {
            let o = hubscope(
                &[
                    "download",
                    "org/m",
                    "--endpoint",
                    &url,
                    target[0],
                    target[1],
                ],
                &[],
            );
            assert_eq!(o.status.code(), Some(1), "{mode}: {}", err(&o));
            assert!(err(&o).contains(says), "{mode}: {}", err(&o));
            assert_eq!(err(&o).trim().lines().count(), 1, "{}", err(&o));
        }
        let mut paths = vec![];
        all_paths(tmp.path(), &mut paths);
        assert!(
            paths
                .iter()
                .all(|p| !p.to_string_lossy().contains("escape")),
            "{mode}: something was written from a hostile value: {paths:?}"
        );
    }

    // cache rm deletes what lies under the repo's own folders, never what a link points to.
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let victim_dir = tmp.path().join("victim-dir");
    std::fs::create_dir_all(victim_dir.join("x")).unwrap();
    let cache = tmp.path().join("cache");
    let root = cache.join("models--org--m");
    let commit = "cd".repeat(20);
    std::fs::create_dir_all(root.join("snapshots").join(&commit)).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), &commit).unwrap();
    std::fs::write(root.join("refs/evil"), "../../../victim-dir").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        &victim,
        root.join("snapshots").join(&commit).join("config.json"),
    )
    .unwrap();
    let o = hubscope(
        &[
            "cache",
            "rm",
            "org/m@evil",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "a ref that is no commit: {}",
        err(&o)
    );
    assert!(
        victim_dir.join("x").is_dir(),
        "cache rm followed a poisoned ref"
    );
    let o = hubscope(
        &[
            "cache",
            "rm",
            "org/m@main",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(!root.join("snapshots").join(&commit).exists());
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "keep me",
        "cache rm deleted a file outside the cache"
    );
}

#[test]
fn offline_inspect_and_mem_read_the_cache_with_zero_requests() {
    let s = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("c");
    let c = cache.to_str().unwrap();
    download_json(&s, "fx/tiny-llama", &["--cache-dir", c]);
    let requests = |s: &Server| s.stats()["requests"].as_u64().unwrap();
    let before = requests(&s);
    // `COMMAND REPO --endpoint <server> --cache-dir C EXTRA` with HF_HUB_OFFLINE=1.
    let offline = |command: &str, repo: &str, extra: &str| {
        hubscope(
            &[command, repo, "--endpoint", &s.url, "--cache-dir", c, extra],
            &[("HF_HUB_OFFLINE", "1")],
        )
    };
    let v = json(&offline("inspect", "fx/tiny-llama", "--json"));
    let summary: Value = serde_json::from_slice(
        &std::fs::read(common::fixtures().join("tiny-llama/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["total_parameters"], summary["parameter_count"]);
    for (command, extra) in [("inspect", "--plain"), ("mem", "--json")] {
        let o = offline(command, "fx/tiny-llama", extra);
        assert!(o.status.success(), "{command}: {}", err(&o));
    }
    let o = offline("inspect", "fx/tiny-qwen2", "--json");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("HF_HUB_OFFLINE") && err(&o).contains("fx/tiny-qwen2"),
        "{}",
        err(&o)
    );
    // One request since `before`: the stats read itself.
    assert_eq!(requests(&s) - before, 1, "offline commands sent requests");
}
