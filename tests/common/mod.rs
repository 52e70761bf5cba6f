//! Helpers shared by the integration tests: where the reference fixtures live.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/fixtures` beside the checkout, or `HUBSCOPE_FIXTURES`.
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("HUBSCOPE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        });
    assert!(
        dir.join("tiny-qwen2").is_dir(),
        "reference fixtures not found at {} (set HUBSCOPE_FIXTURES)",
        dir.display()
    );
    dir
}

/// The decoder fixtures (folders with a reference.json and a config.json).
pub fn model_fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("read fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config.json").is_file() && p.join("reference.json").is_file())
        .collect();
    v.sort();
    assert!(
        v.len() >= 3,
        "expected the three decoder fixtures, found {v:?}"
    );
    v
}

/// The fixtures tests/data/make_fixtures.py makes with transformers 4.57.6 (rope scaling,
/// sliding windows, EOS, Llama 3.2's template): `HUBSCOPE_GEN_FIXTURES`, which scripts/test.sh
/// fills. Missing is a failure, not a skip.
pub fn generated_fixtures() -> Vec<PathBuf> {
    made_fixtures(&[
        "llama3-rope",
        "llama-linear",
        "qwen2-sliding",
        "qwen3-sliding",
        "qwen2-eos",
    ])
}

/// The families beyond Qwen and Llama that tests/data/make_fixtures.py makes with transformers
/// 4.57.6: Mistral, Gemma 2, Gemma 3, Phi-3, Qwen3-MoE, Qwen2-MoE.
pub fn family_fixtures() -> Vec<PathBuf> {
    made_fixtures(&[
        "mistral",
        "gemma2",
        "gemma3",
        "phi3",
        "qwen3-moe",
        "qwen2-moe",
    ])
}

fn made_fixtures(names: &[&str]) -> Vec<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HUBSCOPE_GEN_FIXTURES").expect(
        "HUBSCOPE_GEN_FIXTURES is not set: run scripts/test.sh, which makes these fixtures",
    ));
    let mut v: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    v.sort();
    for d in &v {
        assert!(
            d.join("reference.json").is_file(),
            "{}: missing",
            d.display()
        );
    }
    v
}

/// A Python with `safetensors` (and, for the Hub tests, `huggingface_hub`): `HUBSCOPE_PYTHON`,
/// which scripts/test.sh sets up in a venv.
pub fn python() -> PathBuf {
    let p = std::env::var_os("HUBSCOPE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = std::process::Command::new(&p)
        .args(["-c", "import safetensors"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks the safetensors package: run scripts/test.sh, or set HUBSCOPE_PYTHON",
        p.display()
    );
    p
}

/// `python()` with torch, transformers and peft (scripts/test.sh installs them in the venv):
/// the peers that check hubscope's exports, adapters and parameter counts.
pub fn torch_python() -> PathBuf {
    let p = python();
    let ok = std::process::Command::new(&p)
        .args(["-c", "import torch, transformers, peft"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks torch/transformers/peft: run scripts/test.sh, or set HUBSCOPE_PYTHON",
        p.display()
    );
    p
}

/// A committed helper script under tests/data.
pub fn data_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(name)
}

/// Run the tests/data script `name` with `args` in the test venv, `input` on its stdin; it
/// must succeed (its stderr is shown if not). Its stdout.
#[allow(dead_code)]
pub fn run_script(name: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = std::process::Command::new(torch_python())
        .arg(data_script(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// transformers' top-16 last-position logits for `ids` (tests/data/transformers_logits.py),
/// with a PEFT adapter when given: `(ids, values)`.
pub fn transformers_top16(
    model: &std::path::Path,
    ids: &[u32],
    adapter: Option<&std::path::Path>,
) -> (Vec<u32>, Vec<f32>) {
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let mut cmd = std::process::Command::new(torch_python());
    cmd.arg(data_script("transformers_logits.py"))
        .arg(model)
        .arg(ids.join(","));
    if let Some(a) = adapter {
        cmd.arg(a);
    }
    let o = cmd.output().expect("python");
    assert!(
        o.status.success(),
        "transformers_logits.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(
        o.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("json line"),
    )
    .expect("json");
    let list = |k: &str| v[k].as_array().expect(k).clone();
    (
        list("ids")
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect(),
        list("values")
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect(),
    )
}

/// A fixture model loaded in f32 on the CPU, as the reference was computed.
pub fn fixture_model(name: &str) -> hubscope_core::Model {
    let dir = fixtures().join(name);
    let config =
        hubscope_core::ModelConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap())
            .unwrap();
    let w = std::fs::read(dir.join("model.safetensors")).unwrap();
    hubscope_core::Model::from_safetensors(
        config,
        &[("model.safetensors".into(), &w)],
        hubscope_core::ComputeDtype::F32,
        &hubscope_core::burn::tensor::Device::flex(),
    )
    .unwrap()
}

/// PEFT's reference: every step's loss of its schedule within 1e-3.
pub fn assert_peft_steps(got: &[f64], what: &str) {
    let dir = fixtures().join("lora-tiny-qwen2");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let want: Vec<f64> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{what}: {got:?}");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-3, "{what} step {k}: {g} vs PEFT {w}");
    }
}

/// `hubscope finetune` on tiny-qwen2 with PEFT's reference schedule (adapter_init, its data,
/// lr 1e-3, 2 epochs, batch 1) writing to `out`, plus `extra` arguments; the step losses.
pub fn finetune_reference(out: &std::path::Path, extra: &[&str]) -> Vec<f64> {
    finetune_reference_on(&fixtures().join("tiny-qwen2"), out, extra)
}

/// `finetune_reference` on `model` (tiny-qwen2 in another form: a GGUF file of it).
pub fn finetune_reference_on(
    model: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Vec<f64> {
    let f = fixtures();
    let lora = f.join("lora-tiny-qwen2");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .arg("finetune")
        .arg(model)
        .arg("--data")
        .arg(lora.join("data.jsonl"))
        .arg("--init-adapter")
        .arg(lora.join("adapter_init"))
        .args(["--lr", "0.001", "--epochs", "2", "--json", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64())
        .collect()
}

/// `hubscope serve --models fx=FIXTURES --port 0 --stats` (plus `extra`) on 127.0.0.1, killed
/// when dropped.
pub struct Server {
    child: std::process::Child,
    pub url: String,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let models = format!("fx={}", fixtures().display());
        Server::start_with(&models, 0, extra)
    }

    /// `serve --models MODELS --port PORT --stats` plus `extra`.
    pub fn start_with(models: &str, port: u16, extra: &[&str]) -> Server {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hubscope"))
            .args([
                "serve",
                "--models",
                models,
                "--port",
                &port.to_string(),
                "--stats",
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("serve");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "serve said: {line}");
        Server { child, url }
    }

    /// The server's `--stats` counters (this request included in `requests`).
    pub fn stats(&self) -> serde_json::Value {
        ureq::get(&format!("{}/_hubscope/stats", self.url))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// Bytes the server has sent of one file (`org/name/path`, or `cdn/<sha256>` for its CDN
    /// origin), from its `--stats` counter.
    pub fn sent(&self, key: &str) -> u64 {
        self.stats()["bytes_sent"][key].as_u64().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
