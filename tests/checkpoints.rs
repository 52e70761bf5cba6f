//! Any checkpoint, header-only: families hubscope runs are shown as transformers prints them,
//! the others from their tensor names. The checkpoints are tiny random models of gemma2,
//! gemma3_text, phi3, mistral, mixtral, qwen2_moe, qwen3_moe, deepseek_v3, olmo2 and the
//! hybrids qwen3_next and jamba with transformers' default configs, made by transformers 4.57.6 itself
//! (`tests/data/make_generic.py`: `AutoModelForCausalLM.from_config`, seeded, f32,
//! `save_pretrained`), each with transformers' own `sum(p.numel() for p in
//! model.parameters())` and the names of the tensors `save_pretrained` wrote, in `count.json`,
//! `print(model)` in `print_model.txt`, and in `kv.json` the bytes of every tensor
//! transformers' own cache holds after a forward over 24 and over 40 tokens. Beside them, a
//! block-FP8 checkpoint made with transformers' `FP8Linear` and a 4-bit GPTQ one packed in
//! AutoGPTQ's layout (`qwen3-fp8`, `qwen2-gptq`).

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
        "qwen3_next",
        "jamba",
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

/// The tree of `inspect --json` names exactly the tensors save_pretrained wrote (count.json).
fn assert_tree_names_every_tensor(v: &Value, want: &Value, what: &str) {
    let mut got = BTreeSet::new();
    names(&v["tree"], "", &mut got);
    let saved: BTreeSet<String> = want["saved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, saved, "{what}: the tree names every tensor");
}

/// The families of make_generic.py that hubscope runs (the others: mixtral, deepseek_v3, olmo2,
/// qwen3_next, jamba).
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
        assert_tree_names_every_tensor(&v, &want, &family);
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

/// `mem` output as JSON.
fn mem_json(dir: &str, context: &str) -> Value {
    let o = hubscope(&["mem", dir, "--context", context, "--json"]);
    assert!(
        o.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The KV layout and f16 cache bytes of `mem`'s JSON: a known family's plan or any other's.
fn kv_of(v: &Value) -> (Value, u64) {
    if v["known_family"] == false {
        let kv = &v["kv_cache"];
        return (kv["layout"].clone(), kv["bytes_f16"].as_u64().unwrap());
    }
    let f16 = v["inference"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dtype"] == "f16")
        .unwrap();
    (v["kv_layout"].clone(), f16["kv_cache"].as_u64().unwrap())
}

/// `mem`'s KV cache against what transformers' own cache holds (kv.json, f32) after 24 and 40
/// tokens, past every window, for every family: sliding windows (Gemma 2/3, Mistral), hybrids
/// whose recurrent layers hold a fixed state (Qwen3-Next's Gated DeltaNet, Jamba's Mamba), MoE
/// and MLA. Growth per token equals exactly; so do the totals, but for one entry per window
/// layer: hubscope counts a step's peak (the window, the decoded token included), transformers
/// keeps `window - 1` between steps. For MLA transformers caches the decompressed keys and
/// values, which `mem` reports beside its latent figure.
#[test]
fn mem_plans_the_kv_cache_transformers_holds() {
    for dir in generic_fixtures() {
        let family = dir.file_name().unwrap().to_str().unwrap().to_string();
        let kv: Value =
            serde_json::from_slice(&std::fs::read(dir.join("kv.json")).unwrap()).unwrap();
        let tf = |n: &str| kv["cache_bytes"][n].as_u64().unwrap();
        let d = dir.to_str().unwrap();
        let (layout, at24) = kv_of(&mem_json(d, "24"));
        let (_, at40) = kv_of(&mem_json(d, "40"));
        let layers = layout["layers"].as_array().unwrap();
        if let Some(decompressed) = layout["decompressed_values_per_token"].as_u64() {
            // DeepSeek-V3 (make_generic.py): kv_lora_rank 16 + qk_rope_head_dim 8 latent.
            assert_eq!(layout["values_per_token"], 16 + 8, "{family}");
            for (n, tokens) in [("24", 24), ("40", 40)] {
                assert_eq!(
                    tf(n),
                    layers.len() as u64 * decompressed * tokens * 4,
                    "{family}"
                );
            }
            continue;
        }
        assert_eq!(
            2 * (at40 - at24),
            tf("40") - tf("24"),
            "{family}: growth per token"
        );
        let windows = layers.iter().filter(|l| l.get("window").is_some()).count() as u64;
        let per_entry = layout["values_per_token"].as_u64().unwrap() * 4;
        assert_eq!(2 * at40, tf("40") + windows * per_entry, "{family}: total");
    }
    let jamba = hubscope(&["mem", &named(&generic_fixtures(), "jamba")]);
    let text = String::from_utf8_lossy(&jamba.stdout);
    assert!(
        text.contains("2 of 4 layers attend to every token")
            && text.contains("2 recurrent layers hold a fixed state"),
        "{text}"
    );
}

/// Quantized checkpoints: block FP8 (transformers' `FP8Linear`, 32 x 32 blocks) and 4-bit GPTQ.
/// What is compared: hubscope's parameters equal transformers' `sum(p.numel())` of the model
/// before quantization (a packed I32 `qweight` holds eight 4-bit weights; FP8 weights one
/// each), the scales, zero points and group indexes are quantization metadata equal to the
/// values the quantized model adds (count.json), and the tree names every tensor.
#[test]
fn quantized_checkpoints_count_the_weights_they_hold() {
    let root = generic_fixtures()[0].parent().unwrap().to_path_buf();
    for (name, stored) in [("qwen3-fp8", "F8_E4M3"), ("qwen2-gptq", "I32")] {
        let dir = root.join(name);
        let want: Value =
            serde_json::from_slice(&std::fs::read(dir.join("count.json")).unwrap()).unwrap();
        let o = hubscope(&["inspect", dir.to_str().unwrap(), "--json"]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["total_parameters"], want["parameters"], "{name}");
        assert_eq!(v["quantization_metadata"], want["quant_scales"], "{name}");
        assert!(
            v["stored_dtypes"][stored]["values"].as_u64().unwrap() > 0,
            "{name}"
        );
        assert_tree_names_every_tensor(&v, &want, name);
    }
}

/// `mem`'s fine-tuning rows for a family hubscope does not run: LoRA r=8 on every linear layer
/// trains what PEFT's `target_modules="all-linear"` trains on the transformers model
/// (lora.json, make_generic.py), full fine-tuning every parameter transformers counts; the
/// rows' activations are an estimate and not compared.
#[test]
fn mem_fine_tuning_rows_count_as_peft_does() {
    for dir in generic_fixtures() {
        let family = dir.file_name().unwrap().to_str().unwrap().to_string();
        if RUN.contains(&family.as_str()) {
            continue;
        }
        let count: Value =
            serde_json::from_slice(&std::fs::read(dir.join("count.json")).unwrap()).unwrap();
        let lora: Value =
            serde_json::from_slice(&std::fs::read(dir.join("lora.json")).unwrap()).unwrap();
        let v = mem_json(dir.to_str().unwrap(), "64");
        let rows = v["fine_tuning"].as_array().expect("fine-tuning rows");
        let row = |m: &str| {
            rows.iter()
                .find(|r| r["method"].as_str().unwrap().starts_with(m))
                .unwrap()
        };
        assert_eq!(
            row("full")["trainable_params"],
            count["parameters"],
            "{family}"
        );
        assert_eq!(
            row("LoRA")["trainable_params"],
            lora["trainable"],
            "{family}: LoRA"
        );
        assert_eq!(
            row("QLoRA")["trainable_params"],
            lora["trainable"],
            "{family}: QLoRA"
        );
        assert!(row("LoRA")["activations"].as_u64().unwrap() > 0);
    }
}
