//! `hubscope export`: round trips for every fixture (f32 bit-exact; f16/bf16 equal to the
//! original loaded at that precision), shards that Python's safetensors opens, burnpack.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use hubscope_core::burn::tensor::Device;
use hubscope_core::model::read_f32;
use hubscope_core::{ComputeDtype, Model, ModelConfig};
use serde_json::Value;

fn hubscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubscope"))
        .args(args)
        .output()
        .expect("run hubscope")
}

/// Load a folder the way the binary does (safetensors, shards or burnpack) and return the
/// logits at every position of a fixed prompt.
fn logits(dir: &Path, dtype: ComputeDtype) -> Vec<f32> {
    let config = ModelConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let device = Device::flex();
    let model = if dir.join("model.bpk").is_file() {
        Model::from_burnpack(
            config,
            std::fs::read(dir.join("model.bpk")).unwrap(),
            dtype,
            &device,
        )
        .unwrap()
    } else {
        let mut names = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            if n.starts_with("model") && n.ends_with(".safetensors") {
                names.push(p);
            }
        }
        let bufs: Vec<(String, Vec<u8>)> = names
            .iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(p).unwrap(),
                )
            })
            .collect();
        let files: Vec<(String, &[u8])> = bufs
            .iter()
            .map(|(n, b)| (n.clone(), b.as_slice()))
            .collect();
        Model::from_safetensors(config, &files, dtype, &device).unwrap()
    };
    let ids: Vec<u32> = (0..12).map(|i| 100 + i * 37).collect();
    let (l, _) = model.forward_traced(&ids).unwrap();
    pollster::block_on(read_f32(l)).unwrap()
}

fn export(src: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "export",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = hubscope(&args);
    assert!(
        o.status.success(),
        "export {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn round_trips_for_every_fixture() {
    for src in common::model_fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        let original = logits(&src, ComputeDtype::F32);

        let f32_dir = tmp.path().join("f32");
        export(&src, &f32_dir, &["--dtype", "f32"]);
        assert_eq!(
            logits(&f32_dir, ComputeDtype::F32),
            original,
            "{}: f32 export must reload bit-exact",
            src.display()
        );
        for f in [
            "config.json",
            "generation_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ] {
            assert!(f32_dir.join(f).is_file(), "{f} copied");
        }
        // The exported folder is a complete model: the binary runs it.
        let o = hubscope(&[
            "generate",
            f32_dir.to_str().unwrap(),
            "--prompt",
            "hello",
            "--max-new-tokens",
            "3",
            "--temperature",
            "0",
        ]);
        assert!(o.status.success());

        for (dtype, name, cfg_name) in [
            (ComputeDtype::BF16, "bf16", "bfloat16"),
            (ComputeDtype::F16, "f16", "float16"),
        ] {
            let dir = tmp.path().join(name);
            export(&src, &dir, &["--dtype", name]);
            // Equal to the original rounded to the same dtype, computed at that precision...
            assert_eq!(
                logits(&dir, dtype),
                logits(&src, dtype),
                "{}: {name} export",
                src.display()
            );
            // ...and within that dtype's rounding of the f32 logits when computed in f32.
            let reloaded = logits(&dir, ComputeDtype::F32);
            assert_eq!(reloaded.len(), original.len(), "{name}: logits length");
            let d = reloaded
                .iter()
                .zip(&original)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let bound = if dtype == ComputeDtype::BF16 {
                0.25
            } else {
                0.03
            };
            assert!(
                d < bound,
                "{}: {name} export moved logits by {d}",
                src.display()
            );
            let cfg: Value =
                serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
            let key = if cfg.get("dtype").is_some() && cfg.get("torch_dtype").is_none() {
                "dtype"
            } else {
                "torch_dtype"
            };
            assert_eq!(cfg[key], cfg_name);
            let st = std::fs::read(dir.join("model.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&st).unwrap();
            assert!(
                st.tensors()
                    .iter()
                    .all(|(_, v)| format!("{:?}", v.dtype()) == name.to_uppercase())
            );
            // Tied embeddings are saved once, as transformers saves them.
            let tied = cfg["tie_word_embeddings"].as_bool().unwrap_or(false);
            assert_eq!(st.names().contains(&"lm_head.weight"), !tied);
        }

        let bp = tmp.path().join("burnpack");
        export(&src, &bp, &["--format", "burnpack", "--dtype", "f32"]);
        assert_eq!(
            logits(&bp, ComputeDtype::F32),
            original,
            "{}: burnpack must reload bit-exact",
            src.display()
        );
    }
}

#[test]
fn sharded_export_opens_in_python_safetensors() {
    let src = common::fixtures().join("tiny-qwen3");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sharded");
    let v = export(&src, &out, &["--max-shard-size", "10MB", "--dtype", "bf16"]);
    let shards: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    assert!(
        shards.len() >= 2,
        "a 10 MB limit on a 20 MB (bf16) model makes several shards: {shards:?}"
    );
    assert!(shards.iter().all(|s| s.starts_with("model-0000") && s.contains(&format!("-of-{:05}", shards.len()))));
    assert_eq!(
        logits(&out, ComputeDtype::BF16),
        logits(&src, ComputeDtype::BF16)
    );

    // Python's safetensors reads every shard the index names, with the right names/shapes/dtypes.
    let script = r#"
import json, sys
from safetensors import safe_open
d = sys.argv[1]
index = json.load(open(f"{d}/model.safetensors.index.json"))
seen, total = {}, 0
for name, shard in index["weight_map"].items():
    with safe_open(f"{d}/{shard}", "np") as f:
        s = f.get_slice(name)
        seen[name] = [s.get_shape(), s.get_dtype()]
        total += 2 * int(__import__("math").prod(s.get_shape()))
assert total == index["metadata"]["total_size"], (total, index["metadata"]["total_size"])
print(json.dumps(seen))
"#;
    let o = Command::new(common::python())
        .args(["-c", script, out.to_str().unwrap()])
        .output()
        .expect("python");
    assert!(
        o.status.success(),
        "python: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let seen: Value = serde_json::from_slice(&o.stdout).unwrap();
    let config = ModelConfig::from_json(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let tree = hubscope_core::structure::model_tree(&config);
    let params: Vec<_> = tree
        .all_params()
        .into_iter()
        .filter(|p| p.tied_to.is_none())
        .collect();
    assert_eq!(seen.as_object().unwrap().len(), params.len());
    for p in params {
        assert_eq!(seen[&p.path][0], serde_json::json!(p.shape), "{}", p.path);
        assert_eq!(seen[&p.path][1], "BF16", "{}", p.path);
    }
}

#[test]
fn export_refuses_a_non_empty_target_and_leaves_nothing_half_written() {
    let src = common::fixtures().join("tiny-llama");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("taken");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = hubscope(&[
        "export",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );

    // A broken source: the export fails and no output folder (or partial one) is left.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), broken.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(
        broken.join("model.safetensors"),
        &bytes[..bytes.len() - 100],
    )
    .unwrap();
    let out2 = tmp.path().join("out2");
    let o = hubscope(&[
        "export",
        broken.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !out2.exists()
            && left
                .iter()
                .all(|n| !n.to_string_lossy().contains("partial")),
        "{left:?}"
    );
}

/// transformers' `from_pretrained` loads hubscope's exports: sharded f32 (every fixture, the
/// other families' too: Gemma's tied head, Phi-3's fused projections, the experts of the
/// mixtures, all under transformers' names) and bf16 give the original's logits; an export
/// with `--adapter` merged gives PEFT's logits.
#[test]
fn transformers_loads_the_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = (0..12).map(|i| 100 + i * 37).collect();
    let close = |a: &(Vec<u32>, Vec<f32>), b: &(Vec<u32>, Vec<f32>), tol: f32, what: &str| {
        assert_eq!(a.0[..5], b.0[..5], "{what}: top-5 ids");
        for (x, y) in a.1.iter().zip(&b.1).take(5) {
            assert!((x - y).abs() <= tol, "{what}: {:?} vs {:?}", a.1, b.1);
        }
    };
    for src in common::model_fixtures()
        .into_iter()
        .chain(common::family_fixtures())
    {
        let name = src.file_name().unwrap().to_string_lossy().into_owned();
        let want = common::transformers_top16(&src, &ids, None);
        let out = tmp.path().join(format!("{name}-f32"));
        export(&src, &out, &["--max-shard-size", "10MB", "--dtype", "f32"]);
        assert!(out.join("model.safetensors.index.json").is_file());
        close(
            &common::transformers_top16(&out, &ids, None),
            &want,
            1e-5,
            &format!("{name} f32 shards"),
        );
        if name == "tiny-llama" {
            let out = tmp.path().join(format!("{name}-bf16"));
            export(&src, &out, &["--dtype", "bf16"]);
            let got = common::transformers_top16(&out, &ids, None);
            for (x, y) in got.1.iter().zip(&want.1).take(5) {
                assert!(
                    (x - y).abs() <= 0.25,
                    "{name} bf16: {:?} vs {:?}",
                    got.1,
                    want.1
                );
            }
        }
    }
    let base = common::fixtures().join("tiny-qwen2");
    let adapter = common::fixtures().join("lora-tiny-qwen2/adapter_after");
    let merged = tmp.path().join("merged");
    export(
        &base,
        &merged,
        &["--adapter", adapter.to_str().unwrap(), "--dtype", "f32"],
    );
    close(
        &common::transformers_top16(&merged, &ids, None),
        &common::transformers_top16(&base, &ids, Some(&adapter)),
        1e-4,
        "merged adapter vs PEFT",
    );
}
