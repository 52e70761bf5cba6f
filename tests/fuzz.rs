//! Property tests: the parsers of everything a file or a server hands hubscope never panic.
//! 10,000 generated inputs each — random bytes, truncations of real files, and real files with
//! fields replaced by random JSON (numbers of every size and sign, strings, nulls, arrays,
//! objects) — over safetensors headers, shard indexes, config.json (and what is derived from
//! it: the module tree, `print(model)`, the planner, the load plan), tokenizer_config.json
//! (with its chat template rendered), adapter configs, the JSONL training data parser and GGUF
//! headers.
//! An `Err` is a fine answer; a panic fails the test.

mod common;

use hubscope_core::ModelConfig;
use hubscope_core::load::plan_load;
use hubscope_core::lora::{AdapterConfig, parse_jsonl, render_example};
use hubscope_core::safetensors::{FileHeader, ShardIndex};
use hubscope_core::text::{Message, Tokenizer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

const CASES: u32 = 10_000;

fn config() -> Config {
    Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any JSON value, small: the replacements for real fields.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..70).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "F32",
            "BF16",
            "F16",
            "I64",
            "U8",
            "F8_E4M3",
            "llama",
            "qwen2",
            "qwen3",
            "full_attention",
            "sliding_attention",
            "llama3",
            "linear",
            "default",
            "yarn",
            "q_proj",
            "all-linear",
            "{{ messages[0]['content'] }}",
            "{% for m in messages %}{{ m.role }}{% endfor %}",
            "{{ raise_exception('no') }}",
            "{{ strftime_now('%d %b %Y') }}",
            "{{ 1/0 }}",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The keys of `base` (and, one level down, of its objects) as JSON pointers.
fn pointers(base: &Value) -> Vec<String> {
    let mut out = vec![];
    if let Value::Object(m) = base {
        for (k, v) in m {
            let p = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
            if let Value::Object(inner) = v {
                for k2 in inner.keys() {
                    out.push(format!("{p}/{}", k2.replace('~', "~0").replace('/', "~1")));
                }
            }
            out.push(p);
        }
    }
    out
}

/// `base` with up to six fields replaced, added or removed, serialized.
fn mutated(base: Value) -> impl Strategy<Value = Vec<u8>> {
    let ptrs = pointers(&base);
    let edit = (
        prop::sample::select(ptrs),
        prop::option::weighted(0.9, any_json()),
        "[a-z_]{1,16}",
    );
    prop::collection::vec(edit, 0..6).prop_map(move |edits| {
        let mut v = base.clone();
        for (ptr, new, extra_key) in edits {
            match new {
                Some(x) => {
                    if let Some(slot) = v.pointer_mut(&ptr) {
                        *slot = x;
                    } else if let Value::Object(m) = &mut v {
                        m.insert(extra_key, x);
                    }
                }
                None => {
                    let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", &ptr));
                    let key = key.replace("~1", "/").replace("~0", "~");
                    let holder = if parent.is_empty() {
                        Some(&mut v)
                    } else {
                        v.pointer_mut(parent)
                    };
                    if let Some(Value::Object(m)) = holder {
                        m.remove(&key);
                    }
                }
            }
        }
        serde_json::to_vec(&v).expect("serialize")
    })
}

/// Real bytes, a truncation of them, random bytes, or the real JSON mutated.
fn file_like(real: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let base: Value = serde_json::from_slice(&real).expect("a JSON fixture file");
    let n = real.len();
    prop_oneof![
        4 => mutated(base),
        1 => (0..=n).prop_map(move |k| real[..k].to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join(path)).expect("fixture file")
}

/// A safetensors file: the 8-byte length (usually right, sometimes not) and the header JSON.
fn safetensors_bytes() -> impl Strategy<Value = (Vec<u8>, Option<u64>)> {
    let header = json!({
        "__metadata__": {"format": "pt"},
        "model.embed_tokens.weight": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
        "model.norm.weight": {"dtype": "BF16", "shape": [2], "data_offsets": [32, 36]},
    });
    (
        mutated(header),
        prop_oneof![
            Just(None),
            any::<u64>().prop_map(Some),
            (0u64..4096).prop_map(Some)
        ],
        prop_oneof![3 => Just(None), 1 => any::<u64>().prop_map(Some)],
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(json, size, len, tail)| {
            let n = len.unwrap_or(json.len() as u64);
            let mut b = n.to_le_bytes().to_vec();
            b.extend_from_slice(&json);
            b.extend_from_slice(&tail);
            (b, size)
        })
}

/// A tokenizer small enough to build per case: word-level, a few words and specials.
fn tiny_tokenizer_json() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "hi": 2, "there": 3, "<unk>": 4}, "unk_token": "<unk>"}
    }))
    .expect("json")
}

/// Run `check` over `CASES` inputs of `strategy`; it answers whether the input parsed. A panic
/// fails the test (proptest reports the smallest input that panics); so does a generator whose
/// inputs almost never parse, which would leave the code behind the parser untested.
fn never_panics<S: Strategy>(what: &str, strategy: S, check: impl Fn(S::Value) -> bool) {
    let parsed = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&strategy, |v| {
            if check(v) {
                parsed.set(parsed.get() + 1);
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let ok = parsed.get();
    eprintln!("{what}: {ok} of {CASES} generated inputs parsed, the rest were errors; no panic");
    assert!(ok >= CASES / 20, "{what}: only {ok} inputs parsed");
}

#[test]
fn safetensors_headers_never_panic() {
    let c = ModelConfig::from_json(&fixture("tiny-qwen2/config.json")).expect("config");
    never_panics(
        "safetensors headers",
        safetensors_bytes(),
        |(bytes, size)| {
            let _ = hubscope_core::safetensors::header_len("model.safetensors", &bytes);
            match FileHeader::parse("model.safetensors", &bytes, size) {
                Ok(h) => {
                    // A parsed header feeds the load plan of a real config.
                    let _ = plan_load(&c, &[h]);
                    true
                }
                Err(_) => false,
            }
        },
    );
}

#[test]
fn shard_indexes_never_panic() {
    let real = serde_json::to_vec(&json!({
        "metadata": {"total_size": 123},
        "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                       "lm_head.weight": "model-00002-of-00002.safetensors"}
    }))
    .expect("json");
    never_panics(
        "shard indexes",
        file_like(real),
        |bytes| match ShardIndex::from_json(&bytes) {
            Ok(ix) => {
                let _ = ix.shards();
                true
            }
            Err(_) => false,
        },
    );
}

#[test]
fn configs_and_what_derives_from_them_never_panic() {
    let strategy = prop_oneof![
        file_like(fixture("tiny-qwen2/config.json")),
        file_like(fixture("tiny-qwen3/config.json")),
        file_like(fixture("tiny-llama/config.json")),
    ];
    never_panics(
        "config.json",
        strategy,
        |bytes| match ModelConfig::from_json(&bytes) {
            Ok(c) => {
                let tree = hubscope_core::structure::model_tree(&c);
                let _ = hubscope_core::structure::torch_repr(&tree);
                let _ = tree.num_params();
                let _ = c.kv_bytes_per_token(2);
                let _ =
                    hubscope_core::plan::plan(&c, 512, 1, 8, hubscope_core::plan::PlanDtype::F16);
                let _ = hubscope_core::sampling::GenerationConfig::from_model(&c, None);
                true
            }
            Err(_) => false,
        },
    );
}

/// `base` with a few of its fields set to sizes at the edges: zero, one, the bounds, the largest.
fn extreme_sizes(base: Value) -> impl Strategy<Value = Vec<u8>> {
    let ptrs = pointers(&base);
    let sizes = vec![0u64, 1, 2, 1 << 24, (1 << 24) + 1, 1 << 31, u64::MAX];
    let edit = (prop::sample::select(ptrs), prop::sample::select(sizes));
    prop::collection::vec(edit, 1..4).prop_map(move |edits| {
        let mut v = base.clone();
        for (ptr, size) in edits {
            if let Some(slot) = v.pointer_mut(&ptr) {
                *slot = Value::from(size);
            }
        }
        serde_json::to_vec(&v).expect("serialize")
    })
}

/// The KV layout of any family's config.json (hybrid patterns, MLA, windows): mutated from
/// configs shaped as transformers writes Jamba's, Qwen3-Next's, DeepSeek-V3's and Nemotron-H's.
#[test]
fn kv_layouts_of_any_config_never_panic() {
    let jamba = json!({"model_type": "jamba", "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "hidden_size": 64, "attn_layer_period": 2,
        "attn_layer_offset": 1, "mamba_d_state": 8, "mamba_d_conv": 4, "mamba_expand": 2,
        "sliding_window": null});
    let next = json!({"model_type": "qwen3_next", "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "hidden_size": 64,
        "layer_types": ["linear_attention", "linear_attention", "sliding_attention", "full_attention"],
        "sliding_window": 16, "linear_num_value_heads": 4, "linear_num_key_heads": 2,
        "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_conv_kernel_dim": 4});
    let mla = json!({"model_type": "deepseek_v3", "num_hidden_layers": 3,
        "num_attention_heads": 4, "hidden_size": 64, "kv_lora_rank": 16, "qk_rope_head_dim": 8,
        "qk_nope_head_dim": 8, "v_head_dim": 16, "attn_layer_indices": [0, 2]});
    let nemotron = json!({"num_hidden_layers": 4, "num_attention_heads": 4, "hidden_size": 64,
        "hybrid_override_pattern": "M-*E", "layers_block_type": null});
    let strategy = prop_oneof![
        mutated(jamba.clone()),
        mutated(next.clone()),
        mutated(mla.clone()),
        mutated(nemotron.clone()),
        extreme_sizes(jamba),
        extreme_sizes(next),
        extreme_sizes(mla),
        extreme_sizes(nemotron),
    ];
    never_panics("kv layout", strategy, |bytes| {
        let Ok(raw) = serde_json::from_slice::<Value>(&bytes) else {
            return false;
        };
        match hubscope_core::kv::KvLayout::from_config(&raw) {
            Ok(k) => {
                let _ = k.bytes(usize::MAX, 2);
                let _ = k.growth_per_token(2);
                let _ = k.attention_bytes_per_token(2);
                true
            }
            Err(_) => false,
        }
    });
}

#[test]
fn tokenizer_configs_and_their_templates_never_panic() {
    let real = serde_json::to_vec(&json!({
        "bos_token": "<s>",
        "eos_token": {"content": "</s>", "lstrip": false},
        "chat_template": "{% for m in messages %}{{ bos_token }}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    }))
    .expect("json");
    let tj = tiny_tokenizer_json();
    never_panics(
        "tokenizer_config.json",
        (file_like(real), "\\PC{0,16}"),
        |(bytes, content)| match Tokenizer::from_bytes(&tj, Some(&bytes)) {
            Ok(t) => {
                let messages = [Message::new("user", &content)];
                if let Ok(text) = t.apply_chat_template(&messages, true) {
                    let _ = t.encode(&text, false);
                }
                let _ = render_example(
                    &t,
                    &[
                        Message::new("user", "hi"),
                        Message::new("assistant", &content),
                    ],
                );
                true
            }
            Err(_) => false,
        },
    );
}

#[test]
fn adapter_configs_never_panic() {
    let real = fixture("lora-tiny-qwen2/adapter_init/adapter_config.json");
    never_panics(
        "adapter_config.json",
        file_like(real),
        |bytes| match AdapterConfig::from_json(&bytes) {
            Ok(a) => {
                let _ = a.scale();
                let _ = a.to_json("base");
                true
            }
            Err(_) => false,
        },
    );
}

#[test]
fn training_data_lines_never_panic() {
    let line = prop_oneof![
        file_like(
            serde_json::to_vec(&json!({"messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "there"}]}))
            .expect("json")
        ),
        file_like(
            serde_json::to_vec(&json!({"instruction": "hi", "input": "", "output": "there"}))
                .expect("json")
        ),
    ];
    never_panics(
        "training data (JSONL)",
        prop::collection::vec(line, 1..4),
        |lines| {
            let text: String = lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).replace('\n', " "))
                .collect::<Vec<_>>()
                .join("\n");
            parse_jsonl(&text).is_ok()
        },
    );
}

/// A small valid GGUF file: 3 metadata entries (a string, a u32, an array of strings) and
/// two tensors (F32 [2, 32], Q8_0 [64, 32]), then its data.
fn tiny_gguf() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    b.extend(3u32.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    b.extend(3u64.to_le_bytes());
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, "llama");
    s(&mut b, "llama.block_count");
    b.extend(4u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    s(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend(12u64.to_le_bytes());
    for i in 0..12 {
        s(&mut b, &format!("t{i}"));
    }
    for (name, dims, t, off) in [
        ("a.weight", [32u64, 2], 0u32, 0u64),
        ("b.weight", [32, 64], 8, 256),
    ] {
        s(&mut b, name);
        b.extend(2u32.to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(t.to_le_bytes());
        b.extend(off.to_le_bytes());
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; 256 + 64 * 34]);
    b
}

#[test]
fn gguf_headers_never_panic() {
    let real = tiny_gguf();
    let n = real.len();
    // The header: where edits go (the data after it is never parsed).
    let header = n - (256 + 64 * 34);
    assert!(matches!(
        hubscope_core::gguf::parse("t.gguf", &real, Some(n as u64)),
        Ok(hubscope_core::gguf::Parsed::Header(_))
    ));
    // Up to three edits in the header (a byte, or 8 bytes of a u64 — random or just below
    // u64::MAX: lengths, counts, dims and offsets that overflow), or the file cut; the size
    // known, unknown or wrong.
    let strategy = (
        proptest::collection::vec(
            (
                0..header,
                prop_oneof![any::<u64>(), (0u64..64).prop_map(|k| u64::MAX - k)],
                any::<bool>(),
            ),
            0..4,
        ),
        prop_oneof![Just(n), 0..n],
        prop_oneof![Just(0u8), Just(1), Just(2)],
    );
    never_panics("GGUF headers", strategy, |(edits, cut, size_kind)| {
        let mut bytes = real.clone();
        for (at, v, wide) in edits {
            if wide {
                for (i, b) in v.to_le_bytes().iter().enumerate() {
                    if let Some(x) = bytes.get_mut(at + i) {
                        *x = *b;
                    }
                }
            } else {
                bytes[at] = v as u8;
            }
        }
        bytes.truncate(cut);
        let size = match size_kind {
            0 => Some(bytes.len() as u64),
            1 => None,
            _ => Some(n as u64 * 3),
        };
        match hubscope_core::gguf::parse("t.gguf", &bytes, size) {
            Ok(hubscope_core::gguf::Parsed::Header(h)) => {
                let _ = (h.parameters(), h.by_type(), h.kv_bytes_per_token(2));
                let _ = hubscope_core::checkpoint::summarize_gguf(&h);
                true
            }
            _ => false,
        }
    });
}
