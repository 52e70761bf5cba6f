//! Any checkpoint, header-only: families hubscope runs are shown as transformers prints them,
//! the others from their tensor names. The checkpoints are tiny random models of gemma2,
//! gemma3_text, phi3, mistral, mixtral, qwen2_moe, qwen3_moe, deepseek_v3 and olmo2 with
//! transformers' default configs, made by transformers 4.57.6 itself
//! (`tests/data/make_generic.py`: `AutoModelForCausalLM.from_config`, seeded, f32,
//! `save_pretrained`), each with transformers' own `sum(p.numel() for p in
//! model.parameters())` and the names of the tensors `save_pretrained` wrote, in `count.json`,
//! and `print(model)` in `print_model.txt`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn generic_fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(
        std::env::var_os("HUBSCOPE_GEN_FIXTURES").expect("HUBSCOPE_GEN_FIXTURES (scripts/test.sh)"),
    )
    .join("generic");
    let v: Vec<PathBuf> = [
        "gemma2",
        "gemma3_text",
        "phi3",
        "mistral",
        "mixtral",
        "qwen2_moe",
        "qwen3_moe",
        "deepseek_v3",
        "olmo2",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    for d in &v {
        assert!(d.join("count.json").is_file(), "{}: missing", d.display());
    }
    v
}

fn hubscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .output()
        .unwrap()
}

/// The fixture folder called `name`, as a path string.
fn named(dirs: &[PathBuf], name: &str) -> String {
    dirs.iter()
        .find(|d| d.ends_with(name))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// Every tensor name in the JSON tree, rebuilt from the nesting.
fn names(node: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let here = match node["name"].as_str().unwrap() {
        "" => String::new(),
        n if prefix.is_empty() => n.to_string(),
        n => format!("{prefix}.{n}"),
    };
    for t in node["tensors"].as_array().unwrap() {
        let n = t["name"].as_str().unwrap();
        out.insert(if here.is_empty() {
            n.to_string()
        } else {
            format!("{here}.{n}")
        });
    }
    for c in node["children"].as_array().unwrap() {
        names(c, &here, out);
    }
}

/// The families of make_generic.py that hubscope runs (the others: mixtral, deepseek_v3, olmo2).
const RUN: [&str; 6] = [
    "gemma2",
    "gemma3_text",
    "phi3",
    "mistral",
    "qwen2_moe",
    "qwen3_moe",
];

#[test]
fn any_architecture_is_counted_as_transformers_counts_it() {
    for dir in generic_fixtures() {
        let want: Value =
            serde_json::from_slice(&std::fs::read(dir.join("count.json")).unwrap()).unwrap();
        let d = dir.to_str().unwrap();
        let o = hubscope(&["inspect", d, "--json"]);
        assert!(
            o.status.success(),
            "{d}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let family = want["model_type"].as_str().unwrap();
        assert_eq!(v["model_type"], want["model_type"]);
        assert_eq!(v["architecture"], want["class"], "{family}");
        let runs = RUN.contains(&family);
        assert_eq!(v["known_family"], runs, "{family}");
        if runs {
            // Transformers' default config of the family: the exact tree and total.
            assert_eq!(
                v["total_parameters"], want["parameters"],
                "{family}: parameters"
            );
            let o = hubscope(&["inspect", d, "--plain"]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim_end(),
                std::fs::read_to_string(dir.join("print_model.txt"))
                    .unwrap()
                    .trim_end(),
                "{family}: --plain is print(model)"
            );
            continue;
        }
        assert_eq!(
            v["total_parameters"], want["parameters"],
            "{family}: parameters"
        );
        assert_eq!(v["buffers"], want["buffers"], "{family}: buffers");
        let mut got = BTreeSet::new();
        names(&v["tree"], "", &mut got);
        let saved: BTreeSet<String> = want["saved"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, saved, "{family}: the tree names every tensor");
        assert_eq!(
            v["stored_dtypes"]["F32"]["values"].as_u64().unwrap(),
            want["parameters"].as_u64().unwrap() + want["buffers"].as_u64().unwrap()
        );

        // The text view folds identical layers and experts; --plain refuses in one line.
        let o = hubscope(&["inspect", d]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(text.contains("a family hubscope does not run"), "{text}");
        if family == "mixtral" {
            assert!(text.contains("(0-2): 3 x"), "layers folded: {text}");
            assert!(text.contains("(0-3): 4 x"), "experts folded: {text}");
        }
        if family == "deepseek_v3" {
            // A dense first layer, then MoE layers: two runs.
            assert!(
                text.contains("(0)") && text.contains("(1-2): 2 x"),
                "{text}"
            );
        }
        let o = hubscope(&["inspect", d, "--plain"]);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("needs a family hubscope") && err.contains(family),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

/// `mem` never refuses: weights from the headers; for a mixture of experts, the parameters a
/// token runs through. Expected values counted by hand from make_generic.py's configs.
#[test]
fn mem_plans_the_weights_of_any_architecture() {
    let dirs = generic_fixtures();
    let dir = |f: &str| named(&dirs, f);
    let o = hubscope(&["mem", &dir("mixtral"), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // 3 layers x 4 experts x (gate, up, down: 64 x 128 each); 2 of 4 experts per token.
    let experts = 3 * 4 * 3 * 64 * 128u64;
    assert_eq!(v["parameters"], 365_760);
    assert_eq!(v["experts"]["per_layer"], 4);
    assert_eq!(v["experts"]["parameters"], experts);
    assert_eq!(v["experts"]["active_per_token"], 365_760 - experts / 2);
    assert_eq!(v["weights"][1]["dtype"], "f16");
    assert_eq!(v["weights"][1]["bytes"], 365_760 * 2);
    // A dense model of an unknown family: no experts; weights = transformers' count (count.json) x 4.
    let o = hubscope(&["mem", &dir("olmo2"), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["experts"].is_null());
    assert_eq!(v["weights"][0]["bytes"], 144_096 * 4);
}

/// A remote inspect of such a checkpoint reads only config.json and the header.
#[test]
fn any_architecture_is_read_header_only_from_a_hub() {
    let dirs = generic_fixtures();
    let root = dirs[0].parent().unwrap().to_str().unwrap().to_string();
    let server = common::Server::start_with(&format!("gen={root}"), 0, &[]);
    let o = Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args([
            "inspect",
            "gen/deepseek_v3",
            "--json",
            "--endpoint",
            &server.url,
        ])
        .env("HF_HUB_CACHE", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(dirs[7].join("count.json")).unwrap()).unwrap();
    assert_eq!(v["total_parameters"], want["parameters"]);
    let weights = std::fs::metadata(dirs[7].join("model.safetensors"))
        .unwrap()
        .len();
    let header = v["header_bytes_read"].as_u64().unwrap();
    assert!(
        header < 64 * 1024 && header < weights / 4,
        "read {header} of {weights} bytes"
    );
}

/// `mem` for the families hubscope runs: a sliding-window layer's KV cache holds at most its
/// window, and a mixture of experts reports the parameters a token runs through. Expected
/// values by hand from the fixtures' configs (tests/data/make_fixtures.py).
#[test]
fn mem_counts_sliding_windows_and_active_experts() {
    let dirs = common::family_fixtures();
    let dir = |f: &str| named(&dirs, f);
    // Gemma 3: layers sliding (6), sliding (6), full; 2 kv heads x head_dim 16, f16 K and V.
    let o = hubscope(&["mem", &dir("gemma3"), "--context", "100", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let f16 = v["inference"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dtype"] == "f16")
        .unwrap();
    assert_eq!(f16["kv_cache"], 2 * 2 * 16 * 2 * (6 + 6 + 100));
    assert_eq!(v["active_parameters"], v["parameters"]);
    // Qwen3-MoE: layers 0 and 2 sparse, 8 experts of width 16 (3 x 32 x 16 each), top 2.
    let o = hubscope(&["mem", &dir("qwen3-moe"), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], 9_773_888);
    assert_eq!(
        v["active_parameters"],
        9_773_888 - 2 * (8 - 2) * 3 * 32 * 16
    );
    let text = hubscope(&["mem", &dir("qwen3-moe")]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("9,755,456 parameters active per token")
    );
}
