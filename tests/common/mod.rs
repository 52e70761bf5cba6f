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
