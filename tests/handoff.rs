//! `hubscope finetune --emit llamafactory|trl`: the planner's GPU count and sharding against
//! DeepSpeed's own estimator, the emitted folders read by LLaMA-Factory's and TRL's own argument
//! parsers (and accelerate's config loader), and a LoRA run that TRL's CLI trains from the
//! emitted folder loading back into `hubscope generate --adapter` with the continuation
//! transformers + PEFT give for the same adapter (tests/data/handoff_check.py; the engines come
//! from PyPI in the test venv: llamafactory 0.9.5, trl 0.24.0, deepspeed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn hubscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run hubscope")
}

fn model() -> PathBuf {
    common::fixtures().join("tiny-qwen2")
}

fn data() -> PathBuf {
    common::fixtures().join("lora-tiny-qwen2/data.jsonl")
}

/// `finetune --emit … --json` of tiny-qwen2 into `out`: its summary.
fn emit(out: &Path, extra: &[&str]) -> Value {
    emit_model(&model(), out, extra)
}

/// A folder with what `--emit` reads of Qwen2.5-1.5B (config.json from the committed shapes,
/// the Qwen2.5 tokenizer), no weights: a model whose embedding table is a small part of it.
fn qwen_1_5b(dir: &Path) -> PathBuf {
    let m = dir.join("qwen2.5-1.5b");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("shapes/qwen2.5-1.5b.json"),
        m.join("config.json"),
    )
    .unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            common::fixtures().join("qwen-coder-tokenizer").join(f),
            m.join(f),
        )
        .unwrap();
    }
    m
}

fn emit_model(m: &Path, out: &Path, extra: &[&str]) -> Value {
    let d = data();
    let mut args = vec![
        "finetune",
        m.to_str().unwrap(),
        "--data",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = hubscope(&args);
    assert!(
        o.status.success(),
        "finetune {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("json summary")
}

fn check(args: &[&str]) -> Value {
    let out = common::run_script("handoff_check.py", args, b"");
    let line = out
        .split(|b| *b == b'\n')
        .rfind(|l| l.starts_with(b"{"))
        .expect("a JSON line");
    serde_json::from_slice(line).expect("json")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// DeepSpeed's ZeRO-2 and ZeRO-3 per-GPU bytes for a full fine-tune of `m` on `gpus` GPUs,
/// `per_node` per machine.
fn deepspeed(m: &Value, gpus: u64, per_node: u64) -> (u64, u64) {
    let (p, l) = (u(&m["trainable"]), u(&m["largest_layer"]));
    let nodes = gpus.div_ceil(per_node);
    let per = gpus / nodes;
    let v = check(&[
        "zero",
        &p.to_string(),
        &l.to_string(),
        &per.to_string(),
        &nodes.to_string(),
    ]);
    (u(&v["zero2"]), u(&v["zero3"]))
}

#[test]
fn full_fine_tuning_is_placed_as_deepspeed_counts_and_llamafactory_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    // On one 80 GB GPU the tiny model fits unsharded: DeepSpeed's ZeRO-2 figure for one GPU
    // (2 + 18 bytes per parameter) plus the activations.
    let one = emit(
        &tmp.path().join("one"),
        &["--emit", "llamafactory", "--full"],
    );
    let (m, p) = (&one["memory"], &one["placement"]);
    assert_eq!(
        (u(&p["gpus"]), p["sharding"].as_str()),
        (1, Some("replicated"))
    );
    let acts = u(&m["activations"]);
    assert!(acts > 0);
    assert_eq!(u(&p["per_gpu"]), deepspeed(m, 1, 1).0 + acts);

    // GPUs sized from DeepSpeed's figures so that four (two machines of two) hold the run and
    // two do not: the planner must choose four on two machines, with ZeRO-2 where DeepSpeed
    // says it fits (it shards less), else ZeRO-3. (The tiny model's embedding table is nearly
    // all of it, so ZeRO-3's gathered layer makes it the larger of the two here.)
    let (z2_at_4, z3_at_4) = deepspeed(m, 4, 2);
    let usable = z2_at_4.min(z3_at_4) + acts + 1000;
    let (want, want_bytes) = if z2_at_4 + acts <= usable {
        ("zero2", z2_at_4)
    } else {
        ("zero3", z3_at_4)
    };
    let gpu_gb = usable as f64 / 0.9 / 1e9;
    let (z2_at_2, z3_at_2) = deepspeed(m, 2, 2);
    assert!(
        z2_at_2.min(z3_at_2) + acts > usable,
        "two GPUs must not hold it"
    );
    let gb = format!("{gpu_gb:.9}");
    let dir = tmp.path().join("sharded");
    let four = emit(
        &dir,
        &[
            "--emit",
            "llamafactory",
            "--full",
            "--gpu-gb",
            &gb,
            "--gpus-per-node",
            "2",
        ],
    );
    let p = &four["placement"];
    assert_eq!(
        (
            u(&p["gpus"]),
            u(&p["nodes"]),
            p["sharding"].as_str().unwrap()
        ),
        (4, 2, want),
        "{four}"
    );
    assert_eq!(u(&p["per_gpu"]), want_bytes + acts);

    // LLaMA-Factory's own parser (under torchrun, as `llamafactory-cli train` launches
    // DeepSpeed runs) takes the folder: full fine-tuning, the ZeRO stage through transformers'
    // DeepSpeed integration, hubscope's schedule and loss.
    let lf = check(&["llamafactory", dir.to_str().unwrap()]);
    assert_eq!(lf["finetuning_type"], "full");
    let stage = if want == "zero3" { 3 } else { 2 };
    assert_eq!(lf["zero_stage"], stage);
    assert_eq!(lf["zero3"], stage == 3);
    assert_eq!(lf["dataset"], serde_json::json!(["hubscope"]));
    assert_eq!(lf["cutoff_len"], four["max_length"]);
    assert_eq!(lf["mask_history"], true);
    assert_eq!(lf["disable_shuffling"], true);
    assert_eq!(lf["learning_rate"], 1e-4);
    assert_eq!(lf["scheduler"], "SchedulerType.CONSTANT");
    assert_eq!(lf["max_grad_norm"], 0.0);
    assert_eq!(lf["bf16"], true);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("NNODES=2") && readme.contains("NPROC_PER_NODE=2"));

    // The examples as LLaMA-Factory's sharegpt data: the fixture's conversations unchanged.
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("data.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fixture: Vec<Value> = std::fs::read_to_string(data())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, fixture);
}

#[test]
fn a_model_larger_than_its_embedding_goes_to_zero3_and_llamafactory_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let m = qwen_1_5b(tmp.path());
    // One 80 GB GPU holds a full fine-tune of 1.5B parameters (20 bytes each, as DeepSpeed
    // counts them on one GPU).
    let one = emit_model(
        &m,
        &tmp.path().join("one"),
        &["--emit", "llamafactory", "--full"],
    );
    let mem = &one["memory"];
    assert_eq!(
        u(&mem["trainable"]),
        1_543_714_304,
        "Qwen2.5-1.5B's parameters"
    );
    assert_eq!(u(&one["placement"]["gpus"]), 1);
    let acts = u(&mem["activations"]);
    assert_eq!(
        u(&one["placement"]["per_gpu"]),
        deepspeed(mem, 1, 1).0 + acts
    );
    // GPUs sized from DeepSpeed's figures: eight (two machines of four) hold it with ZeRO-3,
    // not with ZeRO-2, and four hold it with neither.
    let (z2_at_8, z3_at_8) = deepspeed(mem, 8, 4);
    let usable = z3_at_8 + acts + 1000;
    assert!(z2_at_8 + acts > usable);
    let (z2_at_4, z3_at_4) = deepspeed(mem, 4, 4);
    assert!(z2_at_4.min(z3_at_4) + acts > usable);
    let gb = format!("{:.9}", usable as f64 / 0.9 / 1e9);
    let dir = tmp.path().join("zero3");
    let s = emit_model(
        &m,
        &dir,
        &[
            "--emit",
            "llamafactory",
            "--full",
            "--gpu-gb",
            &gb,
            "--gpus-per-node",
            "4",
        ],
    );
    let p = &s["placement"];
    assert_eq!(
        (
            u(&p["gpus"]),
            u(&p["nodes"]),
            p["sharding"].as_str().unwrap()
        ),
        (8, 2, "zero3"),
        "{s}"
    );
    assert_eq!(u(&p["per_gpu"]), z3_at_8 + acts);
    let lf = check(&["llamafactory", dir.to_str().unwrap()]);
    assert_eq!(lf["finetuning_type"], "full");
    assert_eq!(lf["zero_stage"], 3);
    assert_eq!(lf["zero3"], true);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("NNODES=2") && readme.contains("NPROC_PER_NODE=4"));
}

#[test]
fn lora_and_qlora_hand_offs_are_read_by_llamafactory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lora");
    emit(
        &dir,
        &[
            "--emit",
            "llamafactory",
            "--lora-rank",
            "4",
            "--lora-alpha",
            "8",
            "--target",
            "q_proj,v_proj",
        ],
    );
    let lf = check(&["llamafactory", dir.to_str().unwrap()]);
    assert_eq!(lf["finetuning_type"], "lora");
    assert_eq!(
        (&lf["lora_rank"], &lf["lora_alpha"]),
        (&serde_json::json!(4), &serde_json::json!(8))
    );
    assert_eq!(lf["lora_target"], serde_json::json!(["q_proj", "v_proj"]));
    assert_eq!(lf["zero_stage"], Value::Null);
    assert!(!dir.join("ds_z3_config.json").exists());

    let dir = tmp.path().join("qlora");
    let q = emit(&dir, &["--emit", "llamafactory", "--dtype", "q4_0"]);
    assert_eq!(q["method"], "QLoRA");
    let lf = check(&["llamafactory", dir.to_str().unwrap()]);
    assert_eq!(lf["quantization_bit"], 4);
}

#[test]
fn trl_reads_an_fsdp_hand_off() {
    let tmp = tempfile::tempdir().unwrap();
    // Two GPUs that cannot each hold the whole run, so it is sharded.
    let one = emit(&tmp.path().join("one"), &["--emit", "trl", "--full"]);
    let need = u(&one["placement"]["per_gpu"]);
    let gb = format!("{:.9}", need as f64 * 0.6 / 0.9 / 1e9);
    let dir = tmp.path().join("fsdp");
    let s = emit(
        &dir,
        &[
            "--emit",
            "trl",
            "--full",
            "--sharding",
            "fsdp",
            "--gpu-gb",
            &gb,
        ],
    );
    let gpus = u(&s["placement"]["gpus"]);
    assert!(gpus >= 2, "{s}");
    let t = check(&["trl-config", dir.to_str().unwrap()]);
    assert_eq!(t["distributed_type"], "DistributedType.FSDP");
    assert_eq!(u(&t["num_processes"]), gpus);
    assert_eq!(t["fsdp_version"], 2);
    assert_eq!(
        t["fsdp_reshard_after_forward"],
        s["placement"]["sharding"] == "zero3"
    );
    assert_eq!(t["use_peft"], false);
    assert_eq!(t["mixed_precision"], "bf16");
    assert_eq!(t["max_length"], s["max_length"]);
    assert_eq!(t["completion_only_loss"], true);
    // LLaMA-Factory's hand-off shards with DeepSpeed only: said, exit 1.
    let o = hubscope(&[
        "finetune",
        model().to_str().unwrap(),
        "--data",
        data().to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
        "--emit",
        "llamafactory",
        "--full",
        "--sharding",
        "fsdp",
        "--gpu-gb",
        &gb,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("FSDP"));
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn an_adapter_trl_trains_from_the_hand_off_runs_in_hubscope() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trl");
    // A high learning rate and three epochs so the adapter changes the greedy continuation.
    let s = emit(&dir, &["--emit", "trl", "--lr", "0.05", "--epochs", "3"]);
    assert_eq!(s["placement"]["sharding"], "replicated");
    let t = check(&["trl-config", dir.to_str().unwrap()]);
    assert_eq!(t["use_peft"], true);
    assert_eq!(t["lora_r"], 8);
    assert_eq!(t["distributed_type"], "DistributedType.NO");
    assert_eq!(t["dataset_name"], "data");
    assert_eq!(t["epochs"], 3.0);
    check(&["trl-train", dir.to_str().unwrap()]);
    let adapter = dir.join("output-lora");
    assert!(adapter.join("adapter_model.safetensors").is_file());

    // hubscope runs that adapter as transformers + PEFT do: the same greedy tokens, and not
    // the base model's.
    let reference: Value = serde_json::from_slice(
        &std::fs::read(common::fixtures().join("lora-tiny-qwen2/reference.json")).unwrap(),
    )
    .unwrap();
    let prompt = reference["probe"]["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let prompt = prompt.as_str();
    let ours = |adapter: Option<&Path>| -> Value {
        let m = model();
        let mut args = vec![
            "generate",
            m.to_str().unwrap(),
            "--prompt-ids",
            prompt,
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
            "--json",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        let o = hubscope(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["tokens"].clone()
    };
    let theirs = check(&[
        "greedy",
        model().to_str().unwrap(),
        prompt,
        "8",
        adapter.to_str().unwrap(),
    ]);
    let with = ours(Some(&adapter));
    assert_eq!(with, theirs["tokens"]);
    assert_ne!(with, ours(None), "the adapter must change the continuation");
}

#[test]
fn hand_off_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let base = |extra: &[&str]| {
        let m = model();
        let d = data();
        let out = tmp.path().join("out");
        let mut args = vec![
            "finetune",
            m.to_str().unwrap(),
            "--data",
            d.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = hubscope(&args);
        assert!(!out.exists(), "{extra:?} wrote {}", out.display());
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // Does not fit the GPUs asked for.
    let (code, err) = base(&[
        "--emit", "trl", "--full", "--gpus", "2", "--gpu-gb", "0.001",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not fit on 2 GPU(s)"), "{err}");
    // The hand-off options without --emit are refused by the parser.
    let (code, _) = base(&["--full"]);
    assert_eq!(code, Some(2));
    // Full fine-tuning of a quantized base.
    let (code, err) = base(&["--emit", "trl", "--full", "--dtype", "q4_0"]);
    assert_eq!(code, Some(1), "{err}");
    // A GGUF model: the engines train Hugging Face checkpoints.
    let gguf = tmp.path().join("m.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    let o = hubscope(&[
        "finetune",
        gguf.to_str().unwrap(),
        "--data",
        data().to_str().unwrap(),
        "--out",
        tmp.path().join("g").to_str().unwrap(),
        "--emit",
        "trl",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_repo_id_is_handed_off_without_downloading_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::Server::start(&[]);
    let out = tmp.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args([
            "finetune",
            "fx/tiny-qwen2",
            "--endpoint",
            &server.url,
            "--cache-dir",
            tmp.path().join("cache").to_str().unwrap(),
            "--data",
            data().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--emit",
            "llamafactory",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // config.json and the tokenizer came over HTTP; the weights did not.
    assert!(server.sent("fx/tiny-qwen2/config.json") > 0);
    assert!(server.sent("fx/tiny-qwen2/tokenizer.json") > 0);
    assert_eq!(server.sent("fx/tiny-qwen2/model.safetensors"), 0);
    let yaml = std::fs::read_to_string(out.join("train.yaml")).unwrap();
    assert!(
        yaml.contains("model_name_or_path: \"fx/tiny-qwen2\""),
        "{yaml}"
    );
}

#[test]
fn a_run_this_machine_cannot_hold_points_to_the_hand_off() {
    // Qwen2.5-72B's shape (config.json and tokenizer only): LoRA on its f32 base needs far more
    // than any machine these tests run on. finetune says so before reading weights (then
    // fails for want of them: exit 1).
    let tmp = tempfile::tempdir().unwrap();
    let m = qwen_1_5b(tmp.path());
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(m.join("config.json")).unwrap()).unwrap();
    for (k, v) in [
        ("hidden_size", 8192),
        ("intermediate_size", 29568),
        ("num_hidden_layers", 80),
        ("num_attention_heads", 64),
        ("num_key_value_heads", 8),
        ("vocab_size", 152064),
    ] {
        c[k] = v.into();
    }
    c["tie_word_embeddings"] = false.into();
    std::fs::write(m.join("config.json"), c.to_string()).unwrap();
    let o = hubscope(&[
        "finetune",
        m.to_str().unwrap(),
        "--data",
        data().to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("warning: the planner puts this run (LoRA r=8 (f32 base))")
            && err.contains("--emit llamafactory"),
        "{err}"
    );
}

#[test]
fn mem_places_the_runs_as_the_hand_off_does() {
    let tmp = tempfile::tempdir().unwrap();
    let m = qwen_1_5b(tmp.path());
    let full = emit_model(&m, &tmp.path().join("full"), &["--emit", "trl", "--full"]);
    let lora = emit_model(&m, &tmp.path().join("lora"), &["--emit", "trl"]);
    let context = full["max_length"].to_string();
    let o = hubscope(&["mem", m.to_str().unwrap(), "--context", &context, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = &v["gpu_plan"]["rows"];
    assert_eq!(v["gpu_plan"]["gpu_bytes"], 80_000_000_000u64);
    assert_eq!(rows[0]["method"], "full fine-tuning");
    assert_eq!(rows[0]["placement"], full["placement"]);
    assert_eq!(rows[1]["method"], "LoRA");
    assert_eq!(rows[1]["placement"], lora["placement"]);
    assert_eq!(rows[2]["method"], "QLoRA");
}
