//! The memory planner from published configs alone, and `gpu`/`mem` on this machine.

mod common;

use std::process::Command;

use hubscope_core::ModelConfig;
use hubscope_core::plan::{PlanDtype, lora_params, plan};
use hubscope_core::structure::model_tree;
use serde_json::Value;

fn config(name: &str) -> ModelConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("shapes")
        .join(format!("{}.json", name.to_lowercase()));
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
            .find(|l| l.split(' ').next() == Some(name.to_lowercase().as_str()))
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
    assert!(lora.total < p.fine_tuning[0].total);
    // QLoRA's base (4 bits, one layer or the head decoded to f32 at a time) is smaller than
    // LoRA's bf16 one; its activations are f32 (hubscope computes on a quantized base in f32).
    let qlora = &p.fine_tuning[2];
    assert!(qlora.weights < lora.weights && qlora.activations > lora.activations);
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

/// LoRA trainable-parameter counts as PEFT itself counts them (tests/data/count_lora_params.py:
/// get_peft_model over transformers' model on the meta device), not the planner's formula.
#[test]
fn lora_counts_equal_pefts_own() {
    let o = Command::new(common::torch_python())
        .arg(common::data_script("count_lora_params.py"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().filter(|l| l.split(' ').count() == 4).collect();
    assert_eq!(lines.len(), 2 * COUNTS.len(), "{out}");
    for l in lines {
        let f: Vec<&str> = l.split(' ').collect();
        let targets: Vec<String> = f[2].split(',').map(String::from).collect();
        let r: usize = f[1].parse().unwrap();
        let peft: u64 = f[3].parse().unwrap();
        assert_eq!(
            hubscope_core::plan::lora_params_for(&config(f[0]), r, &targets),
            peft,
            "{l}"
        );
    }
}

fn hubscope_json(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().rfind(|l| l.starts_with('{')).unwrap()).unwrap()
}

fn within(planned: u64, measured: u64, pct: f64, what: &str) {
    let off = (planned as f64 - measured as f64) / measured as f64 * 100.0;
    eprintln!(
        "{what}: planned {:.1} MiB, measured {:.1} MiB ({off:+.1}%)",
        planned as f64 / 1048576.0,
        measured as f64 / 1048576.0
    );
    assert!(
        off.abs() <= pct,
        "{what}: planned {planned} vs measured {measured} ({off:+.1}%, claim ±{pct}%)"
    );
}

/// The planner against what the engine really uses on this machine (memory, not time): the
/// inference total at context 512 (448 prompt + 64 generated) vs `bench`'s own measurement
/// (RSS growth of loading + peak growth while generating) within ±10%, for every fixture and
/// the Qwen2.5-0.5B shape; and the LoRA row (r=8, all seven projections, f32 base, gradient
/// checkpointing as `finetune` runs by default) vs the peak RSS growth of its training within
/// ±15%, for tiny-qwen2 on the PEFT fixture data and for
/// the Qwen2.5-0.5B shape (random weights from benches/make_shape.py, tiny-qwen2's tokenizer)
/// on one 512-token chat example; the QLoRA row likewise for that shape with `--dtype q4_0`.
#[test]
fn planner_totals_follow_the_measured_peaks() {
    let f = common::fixtures();
    let inference = |args: &[&str], what: &str| {
        let mut a = vec!["bench"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[
            "--prompt-len",
            "448",
            "--gen",
            "64",
            "--runs",
            "1",
            "--json",
        ]);
        let v = hubscope_json(&a);
        assert_eq!(v["context"], 512);
        let measured = v["rss_load_growth_bytes"].as_u64().unwrap()
            + v["rss_generation_peak_growth_bytes"].as_u64().unwrap();
        within(
            v["planned"]["total"].as_u64().unwrap(),
            measured,
            10.0,
            what,
        );
    };
    for dir in common::model_fixtures() {
        inference(
            &[dir.to_str().unwrap()],
            &format!("{} inference", dir.display()),
        );
    }
    inference(&["--shape", "qwen2.5-0.5b"], "Qwen2.5-0.5B shape inference");

    let targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    // `row`: the planner's row ("LoRA", or "QLoRA" with `--dtype q4_0` in `extra`).
    let train = |model: &std::path::Path,
                 data: &std::path::Path,
                 context: usize,
                 row: &str,
                 extra: &[&str],
                 what: &str| {
        let out = tempfile::tempdir().unwrap();
        let mut args = vec![
            "finetune",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--lora-rank",
            "8",
            "--lora-alpha",
            "16",
            "--target",
            targets,
            "--json",
            "--out",
        ];
        let a = out.path().join("a");
        args.push(a.to_str().unwrap());
        args.extend_from_slice(extra);
        let v = hubscope_json(&args);
        // Training's own peak (from after loading, which holds the file's bytes and the built
        // tensors at once for a moment) over the RSS before loading, as the inference check
        // counts load growth plus generation's peak.
        let measured = v["training_peak_rss_bytes"].as_u64().unwrap()
            - v["rss_before_load_bytes"].as_u64().unwrap();
        let c = ModelConfig::from_json(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
        let p = plan(&c, context, 1, 8, PlanDtype::F32);
        let row = p
            .fine_tuning
            .iter()
            .find(|r| r.method.starts_with(row))
            .unwrap();
        assert_eq!(
            v["trainable_params"].as_u64().unwrap(),
            row.trainable_params,
            "{what}"
        );
        within(row.total, measured, 15.0, what);
    };
    // The longest example of the PEFT data is the context the planner sizes for.
    let r: Value =
        serde_json::from_slice(&std::fs::read(f.join("lora-tiny-qwen2/reference.json")).unwrap())
            .unwrap();
    let longest = r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["input_ids"].as_array().unwrap().len())
        .max()
        .unwrap();
    train(
        &f.join("tiny-qwen2"),
        &f.join("lora-tiny-qwen2/data.jsonl"),
        longest,
        "LoRA",
        &[],
        "tiny-qwen2 LoRA",
    );

    let tmp = tempfile::tempdir().unwrap();
    let shape = tmp.path().join("qwen05");
    let o = Command::new(common::python())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/make_shape.py"))
        .args(["qwen2.5-0.5b", shape.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for t in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(f.join("tiny-qwen2").join(t), shape.join(t)).unwrap();
    }
    // One chat example of exactly 512 tokens (user turn padded with a repeated word).
    let tok = hubscope_core::text::Tokenizer::from_bytes(
        &std::fs::read(shape.join("tokenizer.json")).unwrap(),
        Some(&std::fs::read(shape.join("tokenizer_config.json")).unwrap()),
    )
    .unwrap();
    let example = |n: usize| {
        let messages = vec![
            hubscope_core::text::Message::new("user", &"word ".repeat(n)),
            hubscope_core::text::Message::new("assistant", "Done."),
        ];
        let text = tok.apply_chat_template(&messages, false).unwrap();
        (tok.encode(&text, false).unwrap().len(), messages)
    };
    let base = example(0).0;
    let (len, messages) = ((512 - base.min(512)).saturating_sub(4)..512)
        .map(example)
        .find(|(len, _)| *len == 512)
        .expect("a 512-token example");
    assert_eq!(len, 512);
    let data = tmp.path().join("data.jsonl");
    std::fs::write(&data, serde_json::json!({"messages": messages}).to_string()).unwrap();
    train(&shape, &data, 512, "LoRA", &[], "Qwen2.5-0.5B shape LoRA");
    train(
        &shape,
        &data,
        512,
        "QLoRA",
        &["--dtype", "q4_0"],
        "Qwen2.5-0.5B shape QLoRA (q4_0)",
    );
}

/// The page's `dtype=auto`: Qwen2.5-0.5B's 494M parameters take 1.98 GB in f32, over the
/// 1.5 GB the page allows WebAssembly memory, so the CPU device computes in f16 (0.99 GB) and
/// says why; SmolLM2-135M stays f32. On WebGPU, f16 only where a tensor is over the binding
/// limit in f32, none in f16, and the adapter has shader-f16 (Qwen2.5's 151936 × 896 embedding
/// is 545 MB in f32 and 272 MB in f16: over WebGPU's 128 MiB default either way).
#[test]
fn the_page_computes_in_f16_where_f32_does_not_fit() {
    use hubscope_core::ComputeDtype;
    use hubscope_core::plan::{GpuLimits, fitting_dtype};
    let qwen = config("Qwen2.5-0.5B");
    let (d, why) = fitting_dtype(&qwen, None);
    assert_eq!(d, ComputeDtype::F16);
    let why = why.unwrap();
    assert!(
        why.contains("1.98 GB") && why.contains("WebAssembly"),
        "{why}"
    );
    assert_eq!(
        fitting_dtype(&config("SmolLM2-135M"), None),
        (ComputeDtype::F32, None)
    );
    let mut limits = GpuLimits {
        shader_f16: true,
        ..GpuLimits::default()
    };
    assert_eq!(fitting_dtype(&qwen, Some(&limits)).0, ComputeDtype::F32);
    limits.max_storage_buffer_binding_size = 300_000_000;
    limits.max_buffer_size = 300_000_000;
    limits.shader_f16 = false;
    assert_eq!(fitting_dtype(&qwen, Some(&limits)).0, ComputeDtype::F32);
    limits.shader_f16 = true;
    let (d, why) = fitting_dtype(&qwen, Some(&limits));
    assert_eq!(d, ComputeDtype::F16);
    assert!(why.unwrap().contains("embed_tokens"));
}
