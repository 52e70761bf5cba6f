//! GGUF files header-only: `inspect` on a `.gguf` file, a folder or a Hub repo of them reads
//! the metadata and every tensor's name, shape, ggml type and bytes from the header alone, with
//! a bounded number of reads, equal to what gguf-py (llama.cpp's own Python package) reads back
//! from files it wrote (tests/data/make_gguf.py); broken files are one-line errors.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(
        std::env::var_os("HUBSCOPE_GEN_FIXTURES").expect("HUBSCOPE_GEN_FIXTURES (scripts/test.sh)"),
    )
    .join("gguf")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("expected.json")).expect("expected.json"))
        .unwrap()
}

fn hubscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .env("HF_HUB_CACHE", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn one_line_error(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr).trim_end().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// The header as gguf-py's GGUFReader reads it.
fn check(v: &Value, want: &Value, file: &str) {
    let quant = match want["file_type"].as_u64().unwrap() {
        15 => "mostly Q4_K_M",
        7 => "mostly Q8_0",
        t => panic!("file type {t}"),
    };
    assert_eq!(v["format"], "gguf");
    assert_eq!(v["file"], file);
    assert_eq!(v["architecture"], want["architecture"], "{file}");
    assert_eq!(v["name"], want["name"], "{file}");
    assert_eq!(v["context_length"], want["context_length"], "{file}");
    assert_eq!(v["quantization"], quant, "{file}");
    assert_eq!(v["chat_template"], want["chat_template"], "{file}");
    assert_eq!(v["total_parameters"], want["parameters"], "{file}");
    assert_eq!(
        v["metadata"]["tokenizer.ggml.tokens"]["len"], want["tokens"],
        "{file}: the vocabulary, summarised"
    );
    let got = v["tensors"].as_array().unwrap();
    let tensors = want["tensors"].as_array().unwrap();
    assert_eq!(got.len(), tensors.len(), "{file}: tensors");
    for (g, w) in got.iter().zip(tensors) {
        let name = w["name"].as_str().unwrap();
        assert_eq!(g["name"], w["name"]);
        assert_eq!(g["shape"], w["shape"], "{name}: shape");
        assert_eq!(g["ggml_type"], w["type"], "{name}: type");
        assert_eq!(g["bytes"], w["bytes"], "{name}: bytes");
    }
    // The header only: at least up to the data, far from the whole file.
    let read = v["header_bytes_read"].as_u64().unwrap();
    assert!(
        read >= want["data_offset"].as_u64().unwrap(),
        "{file}: read {read}"
    );
    assert!(read < want["size"].as_u64().unwrap(), "{file}: read {read}");
}

#[test]
fn gguf_headers_read_as_gguf_py_reads_them() {
    let want = expected();
    for file in ["tiny-q4_k_m.gguf", "tiny-q8_0.gguf"] {
        let path = dir().join("repo").join(file);
        let v = json_of(&hubscope(&["inspect", path.to_str().unwrap(), "--json"]));
        check(&v, &want[file], file);
        if file == "tiny-q4_k_m.gguf" {
            // A 3.3 MB header from a 1 MiB first read: the missing bytes, doubling — 3 reads.
            assert_eq!(v["reads"], 3, "bounded reads");
        }
    }
    // The text view: metadata lines and the tree with its blocks folded.
    let path = dir().join("repo/tiny-q4_k_m.gguf");
    let o = hubscope(&["inspect", path.to_str().unwrap()]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for line in [
        "Quantization:     mostly Q4_K_M",
        "Context length:   32,768",
        "(0-1): 2 x",
        "Stored Q4_K",
    ] {
        assert!(text.contains(line), "`{line}` in {text}");
    }
}

#[test]
fn a_folder_or_repo_of_several_files_needs_file() {
    let want = expected();
    let folder = dir().join("repo");
    let d = folder.to_str().unwrap();
    let err = one_line_error(&hubscope(&["inspect", d]));
    assert!(
        err.contains("--file")
            && err.contains("tiny-q4_k_m.gguf")
            && err.contains("tiny-q8_0.gguf"),
        "{err}"
    );
    let v = json_of(&hubscope(&[
        "inspect",
        d,
        "--file",
        "tiny-q8_0.gguf",
        "--json",
    ]));
    check(&v, &want["tiny-q8_0.gguf"], "tiny-q8_0.gguf");
    let err = one_line_error(&hubscope(&["inspect", d, "--file", "nope.gguf"]));
    assert!(err.contains("nope.gguf"), "{err}");

    // The same repo from a Hub-compatible server: HTTP Range reads of the header only.
    let root = dir();
    let server = common::Server::start_with(&format!("gg={}", root.display()), 0, &[]);
    let v = json_of(&hubscope(&[
        "inspect",
        "gg/repo",
        "--endpoint",
        &server.url,
        "--file",
        "tiny-q4_k_m.gguf",
        "--json",
    ]));
    check(&v, &want["tiny-q4_k_m.gguf"], "tiny-q4_k_m.gguf");
    assert_eq!(v["reads"], 3);
}

#[test]
fn broken_gguf_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = std::fs::read(dir().join("repo/tiny-q4_k_m.gguf")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        // Cut inside the header (the vocabulary).
        (
            "cut.gguf",
            whole[..2_000_000].to_vec(),
            "past the end of the file",
        ),
        // Cut inside the data: the last tensors run past the end.
        (
            "short.gguf",
            whole[..whole.len() - 1000].to_vec(),
            "runs past the end",
        ),
        (
            "magic.gguf",
            b"GGML\x03\x00\x00\x00rest".to_vec(),
            "no GGUF magic",
        ),
        ("empty.gguf", vec![], "past the end of the file"),
    ];
    for (name, bytes, says) in cases {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = one_line_error(&hubscope(&["inspect", p.to_str().unwrap()]));
        assert!(err.contains(name) && err.contains(says), "{name}: {err}");
    }
    let p = dir().join("repo/tiny-q8_0.gguf");
    let err = one_line_error(&hubscope(&["inspect", p.to_str().unwrap(), "--plain"]));
    assert!(err.contains("GGUF"), "{err}");
}

/// `mem` on a GGUF file: weights as stored, KV cache from the metadata (head_dim = embedding
/// length 256 / 4 heads = 64; the small file has 1 layer and 2 kv heads).
#[test]
fn mem_plans_a_gguf_file() {
    let want = expected();
    let p = dir().join("repo/tiny-q8_0.gguf");
    let v = json_of(&hubscope(&[
        "mem",
        p.to_str().unwrap(),
        "--context",
        "1000",
        "--json",
    ]));
    let stored: u64 = want["tiny-q8_0.gguf"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(v["weights"], stored);
    assert_eq!(v["quantization"], "mostly Q8_0");
    // One layer in the small file: 1 x 2 kv heads x (64 + 64) x 2 bytes.
    assert_eq!(v["kv_bytes_per_token_f16"], 2 * (64 + 64) * 2);
    assert_eq!(v["kv_cache"], 2 * (64 + 64) * 2 * 1000);
}

/// llama.cpp's own vocabulary GGUF files (19 architectures, written by its converter: real
/// tokenizers of up to 262k tokens, chat templates): every metadata key, the architecture, the
/// vocabulary size and the chat template as gguf-py reads them, each in at most 5 reads.
#[test]
fn llama_cpp_vocabulary_files_read_as_gguf_py_reads_them() {
    let want = expected();
    let mut seen = 0;
    for (name, w) in want.as_object().unwrap() {
        let Some(file) = name.strip_prefix("vocab/") else {
            continue;
        };
        seen += 1;
        let path = dir().join(name);
        let v = json_of(&hubscope(&["inspect", path.to_str().unwrap(), "--json"]));
        let keys: Vec<&str> = v["metadata"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want_keys: Vec<&str> = w["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let mut got_keys = keys.clone();
        want_keys.sort();
        got_keys.sort();
        assert_eq!(got_keys, want_keys, "{file}: metadata keys");
        assert_eq!(v["architecture"], w["architecture"], "{file}");
        assert_eq!(
            v["metadata"]["tokenizer.ggml.tokens"]["len"], w["tokens"],
            "{file}: vocabulary"
        );
        assert_eq!(
            v["chat_template"], w["chat_template"],
            "{file}: chat template"
        );
        assert_eq!(v["tensors"].as_array().unwrap().len() as u64, w["tensors"]);
        assert!(
            v["reads"].as_u64().unwrap() <= 5,
            "{file}: {} reads",
            v["reads"]
        );
    }
    assert_eq!(seen, 19, "llama.cpp's vocabulary files");
}
