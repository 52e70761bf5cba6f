//! The browser app end to end: Debian's headless Chromium driven over W3C WebDriver
//! (chromedriver), against `hubscope serve --web dist` over the fixtures on 127.0.0.1.
//! Needs `dist/` (scripts/build-web.sh) and chromium + chromedriver (scripts/test.sh installs
//! them). Screenshots of each tab land in target/screenshots/.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_hubscope");

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(extra: &[&str]) -> (Proc, String) {
    let models = format!("fx={}", common::fixtures().display());
    let dist = repo_root().join("dist");
    assert!(
        dist.join("index.html").is_file(),
        "{} missing: run scripts/build-web.sh",
        dist.display()
    );
    let mut args = vec!["serve", "--models", &models, "--port", "0", "--stats"];
    let d = dist.to_string_lossy().into_owned();
    args.extend_from_slice(&["--web", &d]);
    args.extend_from_slice(extra);
    let mut child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    (Proc(child), url)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Browser {
    _driver: Proc,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,1100", format!("--user-data-dir={}", profile.path().display())]
        }}}});
        let r: Value = ureq::post(&format!("{base}/session"))
            .send_json(caps)
            .expect("new session")
            .into_json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        Browser {
            _driver: Proc(driver),
            base,
            session,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        let r = match body {
            Some(b) => ureq::request(method, &url).send_json(b),
            None => ureq::request(method, &url).call(),
        };
        match r {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(s, r)) => panic!(
                "webdriver {path}: HTTP {s}: {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("webdriver {path}: {e}"),
        }
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "url", Some(json!({"url": url})));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn text(&self, id: &str) -> String {
        self.js(&format!(
            "const e = document.getElementById('{id}'); return e ? e.textContent : null;"
        ))
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Poll until `pred` holds for the element's text; panics with the page's error text.
    fn wait_text(&self, id: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.text(id);
            if pred(&t) {
                return t;
            }
            let err = self.text("error");
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "#{id} = {t:?} after {secs} s; #error = {err:?}; #status = {:?}",
                self.text("status")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn click(&self, id: &str) {
        self.js(&format!(
            "document.getElementById('{id}').click(); return null;"
        ));
    }

    fn screenshot(&self, name: &str) {
        use std::io::Write;
        let b64 = self.cmd("GET", "screenshot", None);
        let bytes = decode_base64(b64.as_str().unwrap());
        let dir = repo_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join(format!("{name}.png")))
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = vec![];
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| val(c) as u32).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn enc(s: &str) -> String {
    hubscope_core::hub::encode_component(s)
}

fn group(n: u64) -> String {
    hubscope_core::units::group_digits(n)
}

fn reference(name: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(common::fixtures().join(name).join("reference.json")).unwrap(),
    )
    .unwrap()
}

fn sent(url: &str, key: &str) -> u64 {
    let v: Value = ureq::get(&format!("{url}/_hubscope/stats"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    v["bytes_sent"][key].as_u64().unwrap_or(0)
}

#[test]
fn browser_app_end_to_end() {
    let (_server, url) = serve(&[]);
    let b = Browser::start();
    let ep = enc(&url);

    // Structure: each fixture's exact parameter total, from headers only.
    for name in ["tiny-qwen2", "tiny-qwen3", "tiny-llama"] {
        b.go(&format!(
            "{url}/?model=fx/{name}&endpoint={ep}&tab=structure&autorun=1"
        ));
        let summary: Value = serde_json::from_slice(
            &std::fs::read(common::fixtures().join(name).join("summary.json")).unwrap(),
        )
        .unwrap();
        let want = group(summary["parameter_count"].as_u64().unwrap());
        b.wait_text("total-params", 60, |t| t == want);
        if name == "tiny-qwen2" {
            b.screenshot("structure");
            b.click("tab-memory");
            b.wait_text("mem-table", 20, |t| t.contains("f32") && t.contains("LoRA"));
            b.screenshot("memory");
            b.click("tab-model");
            b.screenshot("model");
        }
    }

    // Generate: the reference greedy continuation, on WebGPU and on the CPU.
    for name in ["tiny-qwen2", "tiny-llama"] {
        let r = reference(name);
        let p = &r["prompts"][0];
        let want = p["greedy"]["text"].as_str().unwrap().to_string();
        for device in ["webgpu", "cpu"] {
            b.go(&format!(
                "{url}/?model=fx/{name}&endpoint={ep}&tab=generate&prompt={}&temperature=0&max_new_tokens=16&device={device}&autorun=1",
                enc(p["text"].as_str().unwrap())
            ));
            b.wait_text("status", 240, |t| t == "done");
            assert_eq!(
                b.text("device-label"),
                if device == "webgpu" {
                    "WebGPU"
                } else {
                    "CPU (wasm)"
                }
            );
            assert_eq!(b.text("output"), want, "{name} on {device}");
            assert!(b.text("tok-s").parse::<f64>().unwrap_or(0.0) > 0.0);
            if name == "tiny-qwen2" && device == "webgpu" {
                b.screenshot("generate");
            }
        }
    }

    // A reload takes the weights from Cache Storage: the server sends no weight bytes again.
    let key = "fx/tiny-llama/model.safetensors";
    let before = sent(&url, key);
    assert!(before > 0);
    b.go(&format!("{url}/?model=fx/tiny-llama&endpoint={ep}&tab=generate&prompt=hello&temperature=0&max_new_tokens=4&device=cpu&autorun=1"));
    b.wait_text("status", 120, |t| t == "done");
    // Only the two header Range reads of the structure step touch the weight file again.
    let again = sent(&url, key) - before;
    assert!(
        again < 64 * 1024,
        "a reload must not download the weights again: {again} bytes"
    );
    assert!(
        b.text("progress-text").contains("cache"),
        "{}",
        b.text("progress-text")
    );

    // Unknown repo: a readable message, and the app stays usable.
    b.go(&format!(
        "{url}/?model=fx/nope&endpoint={ep}&tab=structure&autorun=1"
    ));
    let e = b.wait_text("error", 30, |t| !t.is_empty());
    assert!(e.contains("Not found"), "{e}");
    b.click("lang");
    b.wait_text("tab-structure", 5, |t| t == "结构");
}

#[test]
fn server_going_away_mid_download_is_reported() {
    // Slow weights (1 MB/s) so the download is mid-way when the server is killed.
    let (server, url) = serve(&["--fault-rate", "1000000"]);
    let b = Browser::start();
    b.go(&format!("{url}/?model=fx/tiny-qwen3&endpoint={}&tab=generate&prompt=hi&temperature=0&max_new_tokens=2&device=cpu&autorun=1", enc(&url)));
    b.wait_text("progress-text", 60, |t| {
        t.starts_with(|c: char| c.is_ascii_digit()) && !t.starts_with("0 B")
    });
    drop(server);
    let e = b.wait_text("error", 60, |t| !t.is_empty());
    assert!(e.contains("Network error"), "{e}");
    // Usable afterwards: the tabs still switch.
    b.click("tab-memory");
    b.screenshot("after-network-cut");
    assert!(
        b.js("return document.getElementById('panel-memory').className")
            .as_str()
            .unwrap_or("x")
            .is_empty()
            || !b
                .js("return document.getElementById('panel-memory').className")
                .as_str()
                .unwrap_or("")
                .contains("hidden")
    );
}
