//! LoRA against PEFT (the lora-tiny-qwen2 reference): rendering and labels of the data,
//! per-example losses and probe logits with the initial and the trained adapter.

mod common;

use std::path::Path;

use hubscope_core::burn::tensor::Device;
use hubscope_core::lora::{AdapterConfig, attach, causal_lm_loss};
use hubscope_core::model::read_f32;
use hubscope_core::text::{Message, Tokenizer};
use hubscope_core::{ComputeDtype, Model, ModelConfig};
use serde_json::Value;

fn base() -> (Model, Tokenizer) {
    let dir = common::fixtures().join("tiny-qwen2");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let tok = Tokenizer::from_bytes(
        &read("tokenizer.json"),
        Some(&read("tokenizer_config.json")),
    )
    .unwrap();
    (common::fixture_model("tiny-qwen2"), tok)
}

fn lora_dir() -> std::path::PathBuf {
    common::fixtures().join("lora-tiny-qwen2")
}

fn with_adapter(name: &str) -> Model {
    let (mut m, _) = base();
    let d = lora_dir().join(name);
    let cfg =
        AdapterConfig::from_json(&std::fs::read(d.join("adapter_config.json")).unwrap()).unwrap();
    let n = attach(
        &mut m,
        &cfg,
        &std::fs::read(d.join("adapter_model.safetensors")).unwrap(),
    )
    .unwrap();
    assert_eq!(n, 14, "7 targets × 2 layers");
    m
}

fn reference() -> Value {
    serde_json::from_slice(&std::fs::read(lora_dir().join("reference.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn labels(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn losses(m: &Model, r: &Value) -> Vec<f32> {
    r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let l = causal_lm_loss(m, &ids(&e["input_ids"]), &labels(&e["labels"])).unwrap();
            pollster::block_on(read_f32(l)).unwrap()[0]
        })
        .collect()
}

fn top5(m: &Model, probe: &[u32]) -> (Vec<u32>, Vec<f32>) {
    let mut cache = m.new_cache();
    let logits = pollster::block_on(read_f32(m.step(probe, &mut cache).unwrap())).unwrap();
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    idx.truncate(5);
    let vals = idx.iter().map(|&i| logits[i as usize]).collect();
    (idx, vals)
}

/// hubscope's top-5 probe logits with an adapter equal those of Python peft loading that
/// adapter onto transformers' model of `base` (within 1e-4).
fn same_as_peft<I: AsRef<[u32]>, V: AsRef<[f32]>>(
    (i, v): (I, V),
    base: &Path,
    probe: &[u32],
    adapter: &Path,
    what: &str,
) {
    let (i, v) = (i.as_ref(), v.as_ref());
    let peft = common::transformers_top16(base, probe, Some(adapter));
    assert_eq!(peft.0[..5], i[..], "{what}: top-5 ids with the adapter");
    for (g, w) in v.iter().zip(&peft.1) {
        assert!(
            (g - w).abs() <= 1e-4,
            "{what}: hubscope {v:?} vs peft {:?}",
            peft.1
        );
    }
}

#[test]
fn data_renders_as_peft_saw_it() {
    let (_, tok) = base();
    let r = reference();
    let lines: Vec<Value> = std::fs::read_to_string(lora_dir().join("data.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        r["examples"].as_array().unwrap().len(),
        "one example per line"
    );
    for (line, e) in lines.iter().zip(r["examples"].as_array().unwrap()) {
        let messages: Vec<Message> = serde_json::from_value(line["messages"].clone()).unwrap();
        let text = tok.apply_chat_template(&messages, false).unwrap();
        assert_eq!(text, e["text"].as_str().unwrap());
        let prompt = tok
            .apply_chat_template(&messages[..messages.len() - 1], true)
            .unwrap();
        assert_eq!(prompt, e["prompt"].as_str().unwrap());
        let all = tok.encode(&text, false).unwrap();
        assert_eq!(all, ids(&e["input_ids"]));
        let p = tok.encode(&prompt, false).unwrap().len();
        let want: Vec<i64> = all
            .iter()
            .enumerate()
            .map(|(i, &t)| if i < p { -100 } else { t as i64 })
            .collect();
        assert_eq!(want, labels(&e["labels"]));
    }
}

#[test]
fn losses_and_probe_match_peft() {
    let r = reference();
    let close = |got: &[f32], want: &Value, tol: f32, what: &str| {
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= tol, "{what}: {got:?} vs {want:?}");
        }
    };
    let init = with_adapter("adapter_init");
    close(
        &losses(&init, &r),
        &r["losses_with_adapter_init"],
        1e-4,
        "losses with adapter_init",
    );
    let probe = ids(&r["probe"]["input_ids"]);
    let (i, v) = top5(&init, &probe);
    assert_eq!(i, ids(&r["probe"]["top5_init"]["ids"]));
    close(
        &v,
        &r["probe"]["top5_init"]["values"],
        1e-4,
        "probe top5 with adapter_init",
    );

    let after = with_adapter("adapter_after");
    close(
        &losses(&after, &r),
        &r["losses_with_adapter_after"],
        1e-4,
        "losses with adapter_after",
    );
    let (i, v) = top5(&after, &probe);
    assert_eq!(i, ids(&r["probe"]["top5_after"]["ids"]));
    close(
        &v,
        &r["probe"]["top5_after"]["values"],
        1e-4,
        "probe top5 with adapter_after",
    );

    // Merging the adapter into the weights gives the same logits.
    let mut merged = with_adapter("adapter_after");
    hubscope_core::lora::merge(&mut merged);
    let (i2, v2) = top5(&merged, &probe);
    assert_eq!(i2, i);
    close(&v2, &serde_json::json!(v), 1e-4, "merged");
    let _ = Path::new("");
}

/// PEFT's own training run (the shared `lora-tiny-qwen2/reference.json`: 8 AdamW steps on
/// its examples, made with transformers + peft, f32, eager; see the fixtures' README),
/// followed step by step with
/// the decoder layers' activations kept and with gradient checkpointing (each layer
/// recomputed in the backward pass): both within 1e-3 of PEFT's losses, and the two within
/// 1e-5 of each other at every step and after training.
#[test]
fn training_follows_the_peft_schedule() {
    use hubscope_core::lora::Activations;
    let kept = peft_schedule(Activations::Kept);
    let recomputed = peft_schedule(Activations::Recomputed);
    assert_eq!(kept.len(), recomputed.len());
    for (k, (a, b)) in kept.iter().zip(&recomputed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5,
            "step {k}: loss {a} with activations kept, {b} with checkpointing"
        );
    }
}

/// With LoRA dropout, gradient checkpointing recomputes each layer with the masks of its
/// first pass: a fresh adapter (dropout 0.3, seed 7) trained for 6 steps gives the same
/// losses, within 1e-5, with activations kept and recomputed (different masks in the
/// recomputed layers would give different gradients from the second step on).
#[test]
fn checkpointing_keeps_dropout_masks() {
    use hubscope_core::lora::{Activations, AdamW, Example, start_training, train_step};
    let r = reference();
    let run = |how: Activations, dropout: f64| {
        let dir = common::fixtures().join("tiny-qwen2");
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        let config = ModelConfig::from_json(&read("config.json")).unwrap();
        let w = read("model.safetensors");
        let mut m = Model::from_safetensors(
            config.clone(),
            &[("model.safetensors".into(), &w)],
            ComputeDtype::F32,
            &Device::flex().autodiff(),
        )
        .unwrap();
        let fresh = AdapterConfig::fresh(4, 8.0, dropout)
            .unwrap()
            .target(&config, None)
            .unwrap();
        start_training(&mut m, None, fresh, 7).unwrap();
        let mut opt = AdamW::new(1e-2, 0.0);
        let examples = r["examples"].as_array().unwrap();
        (0..6)
            .map(|k| {
                let e = &examples[k % examples.len()];
                let ex = Example {
                    ids: ids(&e["input_ids"]),
                    labels: labels(&e["labels"]),
                };
                pollster::block_on(train_step(&mut m, &ex, &mut opt, how)).unwrap()
            })
            .collect::<Vec<f32>>()
    };
    let kept = run(Activations::Kept, 0.3);
    let recomputed = run(Activations::Recomputed, 0.3);
    for (k, (a, b)) in kept.iter().zip(&recomputed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5,
            "step {k}: {a} kept vs {b} recomputed ({kept:?} / {recomputed:?})"
        );
    }
    // The masks do change the result: the same run without dropout differs.
    let plain = run(Activations::Kept, 0.0);
    assert!(
        kept.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-3),
        "{kept:?} with dropout vs {plain:?} without"
    );
}

/// The reference schedule's losses, then the losses after training on every example.
fn peft_schedule(activations: hubscope_core::lora::Activations) -> Vec<f32> {
    use hubscope_core::lora::{AdamW, Example, make_trainable, train_step};
    let r = reference();
    let dir = common::fixtures().join("tiny-qwen2");
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let config = ModelConfig::from_json(&read("config.json")).unwrap();
    let w = read("model.safetensors");
    let device = Device::flex().autodiff();
    let mut m = Model::from_safetensors(
        config,
        &[("model.safetensors".into(), &w)],
        ComputeDtype::F32,
        &device,
    )
    .unwrap();
    let d = lora_dir().join("adapter_init");
    let cfg =
        AdapterConfig::from_json(&std::fs::read(d.join("adapter_config.json")).unwrap()).unwrap();
    attach(
        &mut m,
        &cfg,
        &std::fs::read(d.join("adapter_model.safetensors")).unwrap(),
    )
    .unwrap();
    make_trainable(&mut m);
    let examples: Vec<Example> = r["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Example {
            ids: ids(&e["input_ids"]),
            labels: labels(&e["labels"]),
        })
        .collect();
    let mut opt = AdamW::new(
        r["optimizer"]["lr"].as_f64().unwrap(),
        r["optimizer"]["weight_decay"].as_f64().unwrap(),
    );
    let mut seen = vec![];
    for (k, s) in r["steps"].as_array().unwrap().iter().enumerate() {
        let ex = &examples[s["example"].as_u64().unwrap() as usize];
        let loss = pollster::block_on(train_step(&mut m, ex, &mut opt, activations)).unwrap();
        let want = s["loss"].as_f64().unwrap() as f32;
        assert!(
            (loss - want).abs() <= 1e-3,
            "{activations:?} step {k}: loss {loss} vs PEFT {want}"
        );
        seen.push(loss);
    }
    let after = losses(&m, &r);
    let want: Vec<f32> = r["losses_with_adapter_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(after.len(), want.len(), "{after:?} vs {want:?}");
    for (g, w) in after.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-3,
            "{activations:?} after training: {after:?} vs {want:?}"
        );
    }
    seen.extend(after);
    seen
}

fn hubscope(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn finetune_generate_adapter_and_merge_through_the_cli() {
    let r = reference();
    let f = common::fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    common::assert_peft_steps(&common::finetune_reference(&out, &[]), "CLI");
    // The adapter hubscope wrote gives PEFT's probe logits after training.
    let (mut m, _) = base();
    let cfg =
        AdapterConfig::from_json(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha), (4, 8.0));
    attach(
        &mut m,
        &cfg,
        &std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
    )
    .unwrap();
    let probe = ids(&r["probe"]["input_ids"]);
    let (i, v) = top5(&m, &probe);
    assert_eq!(i, ids(&r["probe"]["top5_after"]["ids"]));
    assert_eq!(v.len(), 5);
    for (g, w) in v
        .iter()
        .zip(r["probe"]["top5_after"]["values"].as_array().unwrap())
    {
        assert!((g - w.as_f64().unwrap() as f32).abs() <= 1e-3);
    }
    // Python peft loads the adapter hubscope wrote and gives the same probe logits.
    same_as_peft((&i, &v), &f.join("tiny-qwen2"), &probe, &out, "CLI adapter");
    // generate --adapter (PEFT's own adapter) and export --adapter (merged) agree.
    let probe_arg = probe
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let first_token = |args: &[&str]| -> Value {
        let o = hubscope(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["tokens"][0].clone()
    };
    let base_dir = f.join("tiny-qwen2");
    let after = lora_dir().join("adapter_after");
    let t = first_token(&[
        "generate",
        base_dir.to_str().unwrap(),
        "--prompt-ids",
        &probe_arg,
        "--adapter",
        after.to_str().unwrap(),
        "--max-new-tokens",
        "1",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(t, r["probe"]["top5_after"]["ids"][0]);
    let merged = tmp.path().join("merged");
    let o = hubscope(&[
        "export",
        base_dir.to_str().unwrap(),
        "--adapter",
        after.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--dtype",
        "f32",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t2 = first_token(&[
        "generate",
        merged.to_str().unwrap(),
        "--prompt-ids",
        &probe_arg,
        "--max-new-tokens",
        "1",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(t2, t);
    // A bad data line is reported with its number.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n{oops\n").unwrap();
    let o = hubscope(&[
        "finetune",
        base_dir.to_str().unwrap(),
        "--data",
        bad.to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A fresh adapter (PEFT's initialisation, rank 2 on two targets, dropout while training)
/// trained by the CLI: loss goes down, and Python peft loads the result and gives hubscope's
/// probe logits with it.
#[test]
fn fresh_adapter_with_dropout_loads_in_peft() {
    let r = reference();
    let f = common::fixtures();
    let base_dir = f.join("tiny-qwen2");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    let train = |seed: &str, out: &Path| -> Vec<f64> {
        let o = hubscope(&[
            "finetune",
            base_dir.to_str().unwrap(),
            "--data",
            lora_dir().join("data.jsonl").to_str().unwrap(),
            "--lora-rank",
            "2",
            "--lora-alpha",
            "4",
            "--lora-dropout",
            "0.1",
            "--target",
            "q_proj,v_proj",
            "--lr",
            "0.01",
            "--epochs",
            "3",
            "--seed",
            seed,
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["loss"].as_f64())
            .collect()
    };
    let steps = train("7", &out);
    // The seed fixes the initialisation and the dropout masks: the same seed trains the same
    // way; another seed does not.
    assert_eq!(train("7", &tmp.path().join("again")), steps);
    assert_ne!(train("8", &tmp.path().join("other")), steps);
    assert_eq!(steps.len(), 12);
    let first: f64 = steps[..4].iter().sum();
    let last: f64 = steps[8..].iter().sum();
    assert!(last < first, "the loss must go down: {steps:?}");
    let cfg =
        AdapterConfig::from_json(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.lora_dropout), (2, 4.0, 0.1));
    let (mut m, _) = base();
    assert_eq!(
        attach(
            &mut m,
            &cfg,
            &std::fs::read(out.join("adapter_model.safetensors")).unwrap()
        )
        .unwrap(),
        4,
        "2 targets × 2 layers"
    );
    let probe = ids(&r["probe"]["input_ids"]);
    same_as_peft(top5(&m, &probe), &base_dir, &probe, &out, "fresh adapter");
}

/// `--batch-size 2` over examples of different lengths: each step's loss is the mean over all
/// labelled tokens of the batch, as PEFT + transformers compute it on the padded batch
/// (tests/data/peft_batch_reference.py, run here in the test venv); within 1e-3.
#[test]
fn batches_follow_peft_with_padding() {
    let o = std::process::Command::new(common::torch_python())
        .arg(common::data_script("peft_batch_reference.py"))
        .arg(common::fixtures())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(
        o.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .unwrap(),
    )
    .unwrap();
    let want: Vec<f64> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let lengths = v["lengths"].as_array().unwrap();
    assert!(lengths[0] != lengths[1], "the batch pads: {lengths:?}");
    let out = tempfile::tempdir().unwrap();
    let got = common::finetune_reference(&out.path().join("a"), &["--batch-size", "2"]);
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-3, "step {k}: {g} vs PEFT {w}");
    }
}

/// LoRA on the other families with their own layer names: the CLI fine-tunes Phi-3 (fused
/// `qkv_proj`, `gate_up_proj`), Gemma 3 and Qwen3-MoE (whose experts' projections PEFT matches
/// by name, the router `gate` not) with the family's default targets, and Python peft loads
/// each adapter onto transformers' model of the fixture and gives hubscope's probe logits
/// (fixtures: tests/data/make_fixtures.py, transformers 4.57.6).
#[test]
fn default_targets_per_family_load_in_peft() {
    let dirs = common::family_fixtures();
    let cases: [(&str, &[&str], usize); 3] = [
        (
            "phi3",
            &["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
            2 * 4,
        ),
        (
            "gemma3",
            &[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
            3 * 7,
        ),
        // 3 layers x 4 attention projections; layer 1 dense (3), layers 0 and 2: 8 experts x 3.
        (
            "qwen3-moe",
            &[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
            3 * 4 + 3 + 2 * 8 * 3,
        ),
    ];
    for (name, targets, modules) in cases {
        let dir = dirs.iter().find(|d| d.ends_with(name)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("adapter");
        let o = hubscope(&[
            "finetune",
            dir.to_str().unwrap(),
            "--data",
            lora_dir().join("data.jsonl").to_str().unwrap(),
            "--lora-rank",
            "2",
            "--lora-alpha",
            "4",
            "--lr",
            "0.01",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let cfg =
            AdapterConfig::from_json(&std::fs::read(out.join("adapter_config.json")).unwrap())
                .unwrap();
        let mut want: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        let mut got = cfg.target_modules.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{name}: the family's projections");
        let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
        let weights = read("model.safetensors");
        let mut m = Model::from_safetensors(
            ModelConfig::from_json(&read("config.json")).unwrap(),
            &[("model.safetensors".into(), &weights)],
            ComputeDtype::F32,
            &Device::flex(),
        )
        .unwrap();
        let n = attach(
            &mut m,
            &cfg,
            &std::fs::read(out.join("adapter_model.safetensors")).unwrap(),
        )
        .unwrap();
        assert_eq!(n, modules, "{name}: adapted modules");
        let probe = [3u32, 17, 230, 1000, 42, 7];
        same_as_peft(top5(&m, &probe), dir, &probe, &out, name);
    }
    // A target the family does not have is named in one line, before any training.
    let phi3 = dirs.iter().find(|d| d.ends_with("phi3")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let o = hubscope(&[
        "finetune",
        phi3.to_str().unwrap(),
        "--data",
        lora_dir().join("data.jsonl").to_str().unwrap(),
        "--target",
        "q_proj",
        "--out",
        tmp.path().join("a").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`q_proj`") && err.contains("qkv_proj"),
        "{err}"
    );
}

/// QLoRA: LoRA training on a base that stays in 4-bit blocks — a GGUF file (q4_0, written by
/// `export --format gguf`, whose quantizer is bit-exact with llama.cpp's: tests/gguf.rs) and the
/// f32 folder with `--dtype q4_0` (quantized as it loads) — follows PEFT training on what
/// transformers loads from the same file (`from_pretrained(gguf_file=…)` dequantizes to f32;
/// tests/data/peft_gguf_reference.py): every step's loss within 1e-4. The two ways give the same
/// losses bit for bit, and both keep blocks (training without gradient checkpointing, which
/// would hold every layer's decoded weights, is refused for a quantized base only).
#[test]
fn qlora_follows_peft_on_the_dequantized_base() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::fixtures();
    let base = f.join("tiny-qwen2");
    let gguf = tmp.path().join("gguf").join("tiny-qwen2-q4_0.gguf");
    std::fs::create_dir(gguf.parent().unwrap()).unwrap();
    let o = hubscope(&[
        "export",
        base.to_str().unwrap(),
        "--format",
        "gguf",
        "--dtype",
        "q4_0",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peft: Value = serde_json::from_slice(&common::run_script(
        "peft_gguf_reference.py",
        &[f.to_str().unwrap(), gguf.to_str().unwrap()],
        b"",
    ))
    .unwrap();
    let want: Vec<f64> = peft["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let from_file = common::finetune_reference_on(&gguf, &tmp.path().join("a"), &[]);
    let on_load = common::finetune_reference_on(&base, &tmp.path().join("b"), &["--dtype", "q4_0"]);
    assert_eq!(from_file, on_load, "GGUF file vs --dtype q4_0");
    assert_eq!(
        from_file.len(),
        want.len(),
        "{from_file:?} vs PEFT {want:?}"
    );
    for (k, (g, w)) in from_file.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4, "step {k}: {g} vs PEFT {w}");
    }
    // PEFT on the quantized base is not PEFT on the f32 one: the test tells them apart.
    let f32_steps: Vec<f64> = reference()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["loss"].as_f64().unwrap())
        .collect();
    assert!(
        f32_steps
            .iter()
            .zip(&want)
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "{f32_steps:?} vs {want:?}"
    );
    let data = lora_dir().join("data.jsonl");
    let never = tmp.path().join("never");
    for (model, extra) in [(&gguf, vec![]), (&base, vec!["--dtype", "q4_0"])] {
        let mut args = vec![
            "finetune",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            never.to_str().unwrap(),
            "--no-gradient-checkpointing",
        ];
        args.extend(extra);
        let o = hubscope(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("quantized base"), "{err}");
    }
}
