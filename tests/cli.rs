//! The `hubscope` binary: inspect totals and `print(model)` output per fixture, generate's
//! JSON, and bad input (one-line error naming the file or field, non-zero exit, no panic).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn hubscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .output()
        .expect("run hubscope")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// On the shared fixtures and on every family fixture tests/data/make_fixtures.py makes with
/// transformers 4.57.6 (Mistral, Gemma 2/3, Phi-3, Qwen2/3-MoE): `--plain` is `print(model)`
/// byte for byte and the total is transformers' `sum(p.numel())`.
#[test]
fn inspect_total_and_plain_print_match_transformers() {
    for dir in common::model_fixtures()
        .into_iter()
        .chain(common::family_fixtures())
    {
        let d = dir.to_str().unwrap();
        let plain = hubscope(&["inspect", "--plain", d]);
        assert!(plain.status.success(), "{}", stderr(&plain));
        let want = std::fs::read_to_string(dir.join("print_model.txt")).unwrap();
        assert_eq!(
            stdout(&plain).trim_end_matches('\n'),
            want.trim_end_matches('\n'),
            "{d}: --plain"
        );

        let json = hubscope(&["inspect", "--json", d]);
        assert!(json.status.success(), "{}", stderr(&json));
        let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
        let summary: Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(
            v["total_parameters"], summary["parameter_count"],
            "{d}: parameter total"
        );
        // Headers only: far less than the weight file was read.
        let size = std::fs::metadata(dir.join("model.safetensors"))
            .unwrap()
            .len();
        assert!(v["header_bytes_read"].as_u64().unwrap() < 64 * 1024 && size > 1_000_000);

        let text = hubscope(&["inspect", d]);
        assert!(text.status.success());
        let total = summary["parameter_count"].as_u64().unwrap();
        assert!(
            stdout(&text).contains(&format!("Total parameters: {}", group(total))),
            "{}",
            stdout(&text)
        );
    }
}

fn group(n: u64) -> String {
    hubscope_core::units::group_digits(n)
}

/// `generate --json` of the first reference prompt, greedy, 16 new tokens, plus `extra`.
fn greedy_json(dir: &Path, extra: &[&str]) -> (Value, Value) {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let p = reference["prompts"][0].clone();
    let mut args = vec![
        "generate",
        dir.to_str().unwrap(),
        "--prompt",
        p["text"].as_str().unwrap(),
        "--temperature",
        "0",
        "--max-new-tokens",
        "16",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = hubscope(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    (serde_json::from_str(&stdout(&o)).unwrap(), p)
}

#[test]
fn generate_json_gives_reference_continuation() {
    let dir = common::fixtures().join("tiny-llama");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let (v, p) = greedy_json(&dir, &["--logprobs", "3"]);
    assert_eq!(v["prompt_tokens"], p["input_ids"]);
    assert_eq!(v["tokens"], p["greedy"]["new_ids"]);
    assert_eq!(v["text"], p["greedy"]["text"]);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["logprobs"].as_array().unwrap().len(), 16);
    assert_eq!(v["logprobs"][0][0]["id"], p["greedy"]["new_ids"][0]);
    assert!(v["timings"]["decode_tok_s"].as_f64().unwrap() > 0.0);

    // Chat mode renders the template; streaming text mode prints the same text.
    let chat = &reference["prompts"][2];
    let o = hubscope(&[
        "generate",
        dir.to_str().unwrap(),
        "--chat",
        "--system",
        &chat["messages"][0]["content"].as_str().unwrap(),
        "--prompt",
        &chat["messages"][1]["content"].as_str().unwrap(),
        "--temperature",
        "0",
        "--max-new-tokens",
        "16",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let eos = chat["greedy"]["first_eos_index"].is_null();
    if eos {
        assert_eq!(
            stdout(&o).trim_end_matches('\n'),
            chat["greedy"]["text"].as_str().unwrap()
        );
    }
}

/// A copy of a fixture folder to break.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(common::fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        let mut perm = std::fs::metadata(dst.join(e.file_name()))
            .unwrap()
            .permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(dst.join(e.file_name()), perm).unwrap();
    }
    (tmp, dst)
}

/// Runs `generate` (and `inspect` where it reads the broken file) and checks the failure.
fn assert_fails(dir: &Path, must_name: &[&str], also_inspect: bool) {
    let d = dir.to_str().unwrap();
    let mut runs = vec![hubscope(&[
        "generate",
        d,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "2",
        "--temperature",
        "0",
    ])];
    if also_inspect {
        runs.push(hubscope(&["inspect", d]));
    }
    for o in runs {
        let err = stderr(&o);
        assert!(
            !o.status.success(),
            "expected failure, got success: {}",
            stdout(&o)
        );
        assert_eq!(
            o.status.code(),
            Some(1),
            "exit code (a panic exits 101): {err}"
        );
        assert!(!err.contains("panicked"), "panic: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one-line error expected: {err}"
        );
        for m in must_name {
            assert!(err.contains(m), "error should name `{m}`: {err}");
        }
    }
}

#[test]
fn truncated_safetensors() {
    let (_t, dir) = copy_fixture("tiny-qwen2");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(&dir, &["model.safetensors", "truncated"], true);
}

#[test]
fn header_length_past_end_of_file() {
    let (_t, dir) = copy_fixture("tiny-qwen2");
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[..8].copy_from_slice(&(10_000_000u64).to_le_bytes());
    bytes.truncate(4096);
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(&dir, &["model.safetensors", "header length"], true);
}

#[test]
fn tensor_of_the_wrong_shape() {
    let (_t, dir) = copy_fixture("tiny-qwen3");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = vec![];
    for (n, v) in st.tensors() {
        if n == name {
            // [128, 32] -> [64, 64]: same bytes, wrong shape.
            let w =
                safetensors::tensor::TensorView::new(v.dtype(), vec![64, 64], v.data()).unwrap();
            tensors.push((n, w));
        } else {
            tensors.push((n, v));
        }
    }
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&p, out).unwrap();
    assert_fails(&dir, &[name, "[64, 64]", "[128, 32]"], false);
}

#[test]
fn unknown_model_type() {
    let (_t, dir) = copy_fixture("tiny-llama");
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\"llama\"", "\"mamba\"");
    std::fs::write(&p, s).unwrap();
    // generate names the model_type and the supported ones; inspect never refuses (issue 17):
    // it shows the checkpoint from its tensor names.
    assert_fails(
        &dir,
        &[
            "config.json",
            "model_type",
            "mamba",
            "qwen2, qwen3, llama, mistral, gemma2, gemma3_text, phi3, qwen2_moe, qwen3_moe",
        ],
        false,
    );
    let o = hubscope(&["inspect", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("model_type mamba: a family hubscope does not run"));
}

#[test]
fn missing_tokenizer_json() {
    let (_t, dir) = copy_fixture("tiny-llama");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    assert_fails(&dir, &["tokenizer.json"], false);
}

#[test]
fn invalid_json() {
    for file in [
        "config.json",
        "tokenizer_config.json",
        "generation_config.json",
        "tokenizer.json",
    ] {
        let (_t, dir) = copy_fixture("tiny-qwen2");
        std::fs::write(dir.join(file), "{\"vocab_size\": 12,").unwrap();
        assert_fails(&dir, &[file], file == "config.json");
    }
}

#[test]
fn missing_tensor_and_unknown_device() {
    let (_t, dir) = copy_fixture("tiny-qwen2");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let gone = "model.layers.0.self_attn.k_proj.bias";
    let tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != gone)
        .collect();
    std::fs::write(&p, safetensors::serialize(tensors, None).unwrap()).unwrap();
    assert_fails(&dir, &[gone], false);

    let o = generate_on("tpu");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--device tpu"));
}

/// `generate` on tiny-qwen2 with `--device device`.
fn generate_on(device: &str) -> Output {
    hubscope(&[
        "generate",
        common::fixtures().join("tiny-qwen2").to_str().unwrap(),
        "--prompt",
        "x",
        "--device",
        device,
    ])
}

/// The default build holds the CUDA backend (NVRTC, driver loaded at run time): on a machine
/// without an NVIDIA driver, `--device cuda` is a one-line error naming the cause (exit 1, no
/// panic), and `gpu` says why it lists no CUDA device.
#[test]
fn cuda_without_a_driver_is_a_one_line_error() {
    for device in ["cuda", "cuda:1"] {
        let o = generate_on(device);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "panic: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        assert!(err.contains(&format!("--device {device}")), "{err}");
        assert!(err.contains("no CUDA driver (libcuda)"), "{err}");
    }
    let o = hubscope(&["gpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cuda"], serde_json::json!([]));
    assert!(
        v["cuda_note"]
            .as_str()
            .unwrap()
            .contains("no CUDA driver (libcuda)"),
        "{v}"
    );
}

#[test]
fn sharded_checkpoint_with_index_loads_and_matches() {
    let (_t, dir) = copy_fixture("tiny-qwen3");
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut all = st.tensors();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let half = all.len() / 2;
    let mut weight_map = serde_json::Map::new();
    for (k, part) in [all[..half].to_vec(), all[half..].to_vec()]
        .into_iter()
        .enumerate()
    {
        let name = format!("model-0000{}-of-00002.safetensors", k + 1);
        for (n, _) in &part {
            weight_map.insert(n.clone(), Value::String(name.clone()));
        }
        std::fs::write(dir.join(&name), safetensors::serialize(part, None).unwrap()).unwrap();
    }
    std::fs::remove_file(&p).unwrap();
    let index =
        serde_json::json!({"metadata": {"total_size": bytes.len()}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let p0 = &reference["prompts"][1];
    let d = dir.to_str().unwrap();
    let o = hubscope(&[
        "generate",
        d,
        "--prompt",
        p0["text"].as_str().unwrap(),
        "--temperature",
        "0",
        "--max-new-tokens",
        "16",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["tokens"], p0["greedy"]["new_ids"]);
    let o = hubscope(&["inspect", "--json", d]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 2);

    // A shard the index names but the folder lacks.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    assert_fails(&dir, &["model-00002-of-00002.safetensors"], true);
}

/// The binary on the wgpu device (Vulkan on lavapipe in CI): greedy generation gives the
/// reference continuation, `bench` reports device memory, and `finetune` (autodiff on wgpu)
/// follows PEFT's reference schedule.
#[cfg(feature = "wgpu")]
#[test]
fn generate_bench_and_finetune_on_wgpu() {
    let f = common::fixtures();
    let dir = f.join("tiny-qwen2");
    let d = dir.to_str().unwrap();
    let (v, p) = greedy_json(&dir, &["--device", "wgpu"]);
    assert_eq!(v["tokens"], p["greedy"]["new_ids"]);

    let o = hubscope(&[
        "bench",
        d,
        "--device",
        "wgpu",
        "--prompt-len",
        "8",
        "--gen",
        "4",
        "--runs",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["device"], "wgpu");
    let weights = v["planned"]["weights"].as_u64().unwrap();
    let on_device = v["device_bytes_after_load"]
        .as_u64()
        .expect("device memory");
    assert!(
        on_device >= weights && on_device < weights + weights / 10,
        "device memory after load {on_device} vs planned weights {weights}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let losses = common::finetune_reference(&tmp.path().join("adapter"), &["--device", "wgpu"]);
    common::assert_peft_steps(&losses, "finetune on wgpu");
}

/// tiny-qwen2 with its chat template moved out of tokenizer_config.json into
/// chat_template.jinja, as transformers >= 4.43 saves it and many Hub repos ship it.
fn template_in_jinja() -> (tempfile::TempDir, PathBuf) {
    let (t, dir) = copy_fixture("tiny-qwen2");
    let p = dir.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let template = cfg
        .as_object_mut()
        .unwrap()
        .remove("chat_template")
        .expect("the fixture has a template");
    std::fs::write(&p, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    std::fs::write(dir.join("chat_template.jinja"), template.as_str().unwrap()).unwrap();
    (t, dir)
}

#[test]
fn chat_template_jinja_renders_identically_in_generate_and_finetune() {
    let (_t, moved) = template_in_jinja();
    let chat = |dir: &Path| {
        let o = hubscope(&[
            "generate",
            dir.to_str().unwrap(),
            "--chat",
            "--system",
            "Be brief.",
            "--prompt",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--max-new-tokens",
            "6",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()
    };
    let original = chat(&common::fixtures().join("tiny-qwen2"));
    let from_jinja = chat(&moved);
    assert!(
        original["prompt"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>system")
    );
    assert_eq!(from_jinja["prompt"], original["prompt"]);
    assert_eq!(from_jinja["prompt_tokens"], original["prompt_tokens"]);
    assert_eq!(from_jinja["tokens"], original["tokens"]);

    // The file wins over tokenizer_config.json's template, as in transformers.
    let p = moved.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    cfg["chat_template"] = Value::from("WRONG {{ messages[0]['content'] }}");
    std::fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
    assert_eq!(chat(&moved)["prompt"], original["prompt"]);

    // finetune renders its data with the same template.
    let out = tempfile::tempdir().unwrap();
    let data = common::fixtures().join("lora-tiny-qwen2/data.jsonl");
    let o = hubscope(&[
        "finetune",
        moved.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--json",
        "--out",
        out.path().join("a").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Llama 3.2's template prints today's date through strftime_now: hubscope's rendering (local
/// clock) equals transformers' rendering at the same time (made-fixture llama3-rope, whose
/// chat template is only in chat_template.jinja).
#[test]
fn llama_3_template_dates_the_prompt_like_transformers() {
    let dir = common::generated_fixtures()
        .into_iter()
        .find(|d| d.ends_with("llama3-rope"))
        .unwrap();
    let o = hubscope(&[
        "generate",
        dir.to_str().unwrap(),
        "--chat",
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "1",
        "--temperature",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ours: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let script = "import sys\nfrom transformers import AutoTokenizer\nt = AutoTokenizer.from_pretrained(sys.argv[1])\nsys.stdout.write(t.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False, add_generation_prompt=True))";
    let py = Command::new(common::torch_python())
        .args(["-c", script, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let theirs = String::from_utf8_lossy(&py.stdout).into_owned();
    assert!(theirs.contains("Today Date: "), "{theirs}");
    assert_eq!(ours["prompt"].as_str().unwrap(), theirs);
}

/// Bad values on the command line: one line, exit 1, never a panic (exit 101).
#[test]
fn bad_generation_and_bench_arguments_are_one_line_errors() {
    let tiny = common::fixtures().join("tiny-llama");
    let d = tiny.to_str().unwrap();
    let base = ["generate", d, "--max-new-tokens", "2"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--prompt-ids", "1,49152"], "49152"),
        (vec!["--prompt-ids", "4294967295"], "outside the vocabulary"),
        (vec!["--prompt", "hi", "--top-p", "0"], "top_p"),
        (vec!["--prompt", "hi", "--top-p", "1.5"], "top_p"),
        (vec!["--prompt", "hi", "--temperature", "-1"], "temperature"),
        (
            vec!["--prompt", "hi", "--temperature", "NaN"],
            "temperature",
        ),
        (
            vec!["--prompt", "hi", "--repetition-penalty", "0"],
            "repetition_penalty",
        ),
    ];
    for (extra, says) in cases {
        let mut args = base.to_vec();
        args.extend(extra.iter());
        let o = hubscope(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    }
    // An empty prompt: SmolLM2's tokenizer adds no BOS, so there is nothing to continue.
    let o = hubscope(&["generate", d, "--prompt", "", "--max-new-tokens", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    // --max-new-tokens 0: a defined result, no tokens.
    let o = hubscope(&[
        "generate",
        d,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "0",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["tokens"].as_array().unwrap().len(), 0);
    assert_eq!(v["finish_reason"], "length");
    // bench: no runs, no prompt; a vocabulary under 1000 tokens is fine.
    for (args, says) in [
        (vec!["bench", d, "--runs", "0"], "--runs"),
        (vec!["bench", d, "--prompt-len", "0"], "--prompt-len"),
        (vec!["bench", d, "--batch", "0"], "--batch"),
    ] {
        let o = hubscope(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
    let (_t, small) = copy_fixture("tiny-llama");
    let cfg_path = small.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["vocab_size"] = Value::from(500);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let w = std::fs::read(small.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&w).unwrap();
    let mut tensors: Vec<(String, Vec<u8>, Vec<usize>)> = vec![];
    for (name, view) in st.tensors() {
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name == "model.embed_tokens.weight" {
            shape[0] = 500;
            data.truncate(500 * shape[1] * 4);
        }
        tensors.push((name, data, shape));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &small.join("model.safetensors")).unwrap();
    let o = hubscope(&[
        "bench",
        small.to_str().unwrap(),
        "--prompt-len",
        "8",
        "--gen",
        "4",
        "--runs",
        "1",
        "--batch",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "vocab 500: {}", stderr(&o));
    // Batched decoding (three sequences a step) ran and was timed.
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["batch"], 3);
    assert!(v["batch_decode_tok_s"]["median"].as_f64().unwrap() > 0.0);
}

/// `--seed` sampling repeats through the binary; another seed gives other tokens.
#[test]
fn seeded_sampling_repeats_from_the_command_line() {
    let d = common::fixtures().join("tiny-qwen2");
    let run = |seed: &str| {
        let o = hubscope(&[
            "generate",
            d.to_str().unwrap(),
            "--prompt",
            "Once upon a time",
            "--temperature",
            "1.0",
            "--top-k",
            "0",
            "--max-new-tokens",
            "16",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["tokens"].clone()
    };
    assert_eq!(run("11"), run("11"));
    assert_ne!(run("11"), run("12"));
}

/// `hubscope ... | head`: when the reader closes the pipe, the command ends quietly (as Unix
/// tools do), never with a panic (exit 101).
#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let dir = common::fixtures().join("tiny-qwen2");
    for args in [
        vec!["mem", dir.to_str().unwrap()],
        vec!["inspect", "--json", dir.to_str().unwrap()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubscope"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_ne!(
            o.status.code(),
            Some(101),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    }
}

/// `perplexity` scores a text one decode step at a time: the perplexity transformers computes
/// in one forward pass over the same tokens (tests/data/transformers_perplexity.py), within
/// 1e-4 relative, and the same top token at every position.
#[test]
fn perplexity_matches_transformers() {
    let dir = common::fixtures().join("tiny-llama");
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text.txt");
    std::fs::write(
        &text,
        "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; \
         the crew came home safely, and people everywhere watched it on television.",
    )
    .unwrap();
    let o = hubscope(&[
        "perplexity",
        dir.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&common::run_script(
        "transformers_perplexity.py",
        &[dir.to_str().unwrap(), text.to_str().unwrap(), "512"],
        b"",
    ))
    .unwrap();
    assert_eq!(got["tokens"], want["tokens"]);
    assert_eq!(got["top"], want["top"]);
    let (g, w) = (
        got["perplexity"].as_f64().unwrap(),
        want["perplexity"].as_f64().unwrap(),
    );
    assert!(
        (g - w).abs() <= 1e-4 * w,
        "perplexity {g} vs transformers {w}"
    );
}
