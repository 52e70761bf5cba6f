//! The memory planner from published configs alone, and `gpu`/`mem` on this machine.

mod common;

use std::process::Command;

use hubscope_core::ModelConfig;
use hubscope_core::plan::{PlanDtype, lora_params, plan};
use hubscope_core::structure::model_tree;
use serde_json::Value;

fn config(name: &str) -> ModelConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/configs")
        .join(format!("{name}.json"));
    ModelConfig::from_json(&std::fs::read(&p).unwrap()).unwrap()
}

/// transformers' `sum(p.numel() for p in model.parameters())` (tied once), as printed by
/// tests/data/count_params.py and the model cards.
const COUNTS: [(&str, u64); 5] = [
    ("Qwen2.5-0.5B", 494_032_768),
    ("Qwen2.5-1.5B", 1_543_714_304),
    ("Qwen3-0.6B", 596_049_920),
    ("SmolLM2-135M", 134_515_008),
    ("Llama-3.2-1B", 1_235_814_400),
];

#[test]
fn parameter_totals_from_config_alone() {
    for (name, want) in COUNTS {
        let c = config(name);
        assert_eq!(model_tree(&c).num_params() as u64, want, "{name}");
        assert_eq!(
            plan(&c, 512, 1, 8, PlanDtype::F16).parameters,
            want,
            "{name}"
        );
    }
}

/// The same totals from transformers itself (tests/data/count_params.py builds each model on
/// the meta device from the committed config).
#[test]
fn transformers_counts_the_same_parameters() {
    let o = Command::new(common::torch_python())
        .arg(common::data_script("count_params.py"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for (name, want) in COUNTS {
        let line = out
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing in {out}"));
        let got: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(got, want, "transformers' count of {name}");
        assert_eq!(model_tree(&config(name)).num_params() as u64, got, "{name}");
    }
}

#[test]
fn kv_cache_weights_and_lora_counts() {
    let c = config("Qwen2.5-0.5B");
    assert_eq!(c.kv_bytes_per_token(2), 12_288);
    let p = plan(&c, 4096, 2, 8, PlanDtype::F16);
    let f16 = p
        .inference
        .iter()
        .find(|r| r.dtype == PlanDtype::F16)
        .unwrap();
    assert_eq!(f16.weights, 494_032_768 * 2);
    assert_eq!(f16.kv_cache, 12_288 * 4096 * 2);
    let f32r = p
        .inference
        .iter()
        .find(|r| r.dtype == PlanDtype::F32)
        .unwrap();
    assert_eq!(f32r.kv_cache, 24_576 * 4096 * 2);
    assert_eq!(f16.rule_of_thumb, 494_032_768 * 2);
    assert!(
        f16.thumb_off_pct < 0.0,
        "the rule of thumb leaves out KV cache and activations"
    );
    // LoRA r=8 on q,k,v,o,gate,up,down: 8 × Σ(in+out) per layer × 24 layers.
    let per_layer = (896 + 896) + 2 * (896 + 128) + (896 + 896) + 2 * (896 + 4864) + (4864 + 896);
    assert_eq!(lora_params(&c, 8), 8 * per_layer as u64 * 24);
    assert_eq!(lora_params(&c, 8), 4_399_104);
    let lora = &p.fine_tuning[1];
    assert_eq!(lora.trainable_params, 4_399_104);
    assert!(lora.total < p.fine_tuning[0].total && p.fine_tuning[2].total < lora.total);
    // The 151936 × 896 embedding is 272 MB in f16: over both default WebGPU limits.
    assert_eq!(p.webgpu_big_tensors.len(), 1);
    let t = &p.webgpu_big_tensors[0];
    assert_eq!(
        (t.name.as_str(), t.bytes),
        ("model.embed_tokens.weight", 272_269_312)
    );
    assert!(t.exceeds.contains("maxBufferSize"));
}

#[test]
fn mem_and_gpu_commands() {
    let bin = env!("CARGO_BIN_EXE_hubscope");
    let dir = common::fixtures().join("tiny-qwen2");
    let o = Command::new(bin)
        .args([
            "mem",
            dir.to_str().unwrap(),
            "--context",
            "512",
            "--gpu-gb",
            "8",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["parameters"], 4_892_960);
    assert_eq!(v["kv_bytes_per_token_f16"], 128);
    assert_eq!(
        v["verdicts"].as_array().unwrap().last().unwrap()["inference"][0]["fits"],
        true
    );

    let o = Command::new(bin).args(["gpu", "--json"]).output().unwrap();
    assert!(
        o.status.success(),
        "gpu must not fail without drivers: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // CI installs mesa-vulkan-drivers: the lavapipe (llvmpipe) Vulkan adapter must be listed.
    let names: Vec<String> = v["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{} {}", a["backend"], a["name"]))
        .collect();
    if std::env::var_os("HUBSCOPE_EXPECT_LAVAPIPE").is_some() {
        assert!(
            names
                .iter()
                .any(|n| n.contains("Vulkan") && n.contains("llvmpipe")),
            "{names:?}"
        );
    }
    assert!(v["nvidia"].is_array());
}
