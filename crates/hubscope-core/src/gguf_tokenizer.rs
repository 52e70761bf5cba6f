//! A GGUF file's tokenizer as the tokenizer files a Hugging Face folder holds
//! (`tokenizer.json`, `tokenizer_config.json`), built from its metadata: the vocabulary, merges
//! and token types, the pre-tokenizer llama.cpp names (`tokenizer.ggml.pre`), BOS/EOS and the
//! chat template. Byte-level BPE (`tokenizer.ggml.model = gpt2`) is what llama-, Qwen- and
//! SmolLM-family GGUF files carry; SentencePiece vocabularies (`llama`) are refused by name.
//! And the other way ([`metadata`], for GGUF export): those files as the metadata llama.cpp's
//! converter writes, the pre-tokenizer named by which one tokenizes a check text as they do.

use serde_json::{Value, json};

use crate::bundle::TokenizerBytes;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::GgufHeader;
use crate::gguf_write::Meta;

/// llama.cpp's token types (`llama_token_type`): control tokens are special, user-defined ones
/// are added tokens matched before BPE.
const NORMAL: i64 = 1;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;
const UNUSED: i64 = 5;

/// The pre-tokenizers hubscope builds, in the order export tries them.
const PRE_NAMES: [&str; 4] = ["qwen2", "llama-bpe", "smollm", "gpt-2"];

const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex})
}

fn split(pattern: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false})
}

/// The normalizer and pre-tokenizer of llama.cpp's pre-tokenizer type `pre`, as the original
/// `tokenizer.json` of those models has them.
fn pre_tokenizer(pre: &str) -> Option<(Value, Value)> {
    let seq = |p: Vec<Value>| json!({"type": "Sequence", "pretokenizers": p});
    Some(match pre {
        "qwen2" => (
            json!({"type": "NFC"}),
            seq(vec![split(QWEN2_SPLIT), byte_level(false)]),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            seq(vec![split(LLAMA3_SPLIT), byte_level(false)]),
        ),
        "smollm" => (
            Value::Null,
            seq(vec![
                json!({"type": "Digits", "individual_digits": true}),
                byte_level(true),
            ]),
        ),
        "default" | "gpt-2" => (Value::Null, byte_level(true)),
        _ => return None,
    })
}

/// The tokenizer files the metadata stands for; None when the file carries no tokenizer.
pub fn tokenizer_files(h: &GgufHeader) -> Result<Option<TokenizerBytes>> {
    let bad = |message: String| Error::Gguf {
        file: h.file.clone(),
        message,
    };
    let Some(model) = h.get("tokenizer.ggml.model").and_then(Value::as_str) else {
        return Ok(None);
    };
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer model `{model}` is not supported yet (hubscope builds byte-level BPE \
             tokenizers, `gpt2`)"
        )));
    }
    let pre = h
        .get("tokenizer.ggml.pre")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let (normalizer, pre_tokenizer) = pre_tokenizer(pre).ok_or_else(|| {
        bad(format!(
            "pre-tokenizer `{pre}` is not supported yet (qwen2, llama-bpe, smollm, gpt-2, default)"
        ))
    })?;
    let strings = |key: &str| -> Result<Vec<&str>> {
        let list = h
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("metadata `{key}` is missing or not a list")))?;
        list.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad(format!("`{key}` holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i64> = match h.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(t) => t.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
        None => vec![],
    };
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), json!(i)))
        .collect();
    let added: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(**t, CONTROL | USER_DEFINED))
        .filter_map(|(i, t)| {
            Some(
                json!({"id": i, "content": tokens.get(i)?, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": *t == CONTROL}),
            )
        })
        .collect();
    let id = |key: &str| -> Result<Option<(u64, &str)>> {
        match h.get(key).and_then(Value::as_u64) {
            None => Ok(None),
            Some(i) => match tokens.get(i as usize) {
                Some(t) => Ok(Some((i, *t))),
                None => Err(bad(format!(
                    "`{key}` is {i}, past the vocabulary ({} tokens)",
                    tokens.len()
                ))),
            },
        }
    };
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let eos = id("tokenizer.ggml.eos_token_id")?;
    let add_bos = h
        .get("tokenizer.ggml.add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let post_processor = match bos.filter(|_| add_bos) {
        Some((i, t)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": t, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": t, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]}}
        }),
        None => byte_level(false),
    };
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": byte_level(false),
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges}
    });
    let mut config = serde_json::Map::new();
    config.insert("add_bos_token".into(), json!(add_bos));
    if let Some((_, t)) = bos {
        config.insert("bos_token".into(), json!(t));
    }
    if let Some((_, t)) = eos {
        config.insert("eos_token".into(), json!(t));
    }
    if let Some(t) = h.chat_template() {
        config.insert("chat_template".into(), json!(t));
    }
    let to_bytes = |v: &Value| serde_json::to_vec(v).expect("JSON values serialize");
    Ok(Some(TokenizerBytes {
        tokenizer_json: to_bytes(&tokenizer),
        tokenizer_config: Some(to_bytes(&Value::Object(config))),
        chat_template_jinja: None,
        chat_template_json: None,
    }))
}

/// Text on which pre-tokenizers differ: digit runs, contractions, spacing, newlines, scripts.
const CHECK_TEXT: &str = "\n \n\n \t\t 3 33 333 3333 33333 3.14 I've 'RE you'll \
    Hello, world!!  ...  ✅ 🦙🦙 我想在apple工作1314151天 нещо ```code``` \r\n  end";

/// Whether llama.cpp's converter marks an added token as control although it is not special
/// (`<|…|>`, `<｜…｜>`, `<unused…>`, a few literal names).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// A tokenizer's files as the `tokenizer.*` metadata llama.cpp's converter writes for a
/// byte-level BPE vocabulary: model, pre-tokenizer, tokens (padded to the config's vocabulary
/// size), token types, merges, special token ids (`tokenizer_config.json`'s tokens, then
/// `config.json`'s ids), whether BOS/EOS are added, the chat template.
pub fn metadata(t: &TokenizerBytes, config: &ModelConfig) -> Result<Vec<(String, Meta)>> {
    let bad = |m: String| Error::Invalid(format!("GGUF export: tokenizer.json: {m}"));
    let tj: Value = serde_json::from_slice(&t.tokenizer_json).map_err(|e| bad(e.to_string()))?;
    let tc: Value = match &t.tokenizer_config {
        Some(b) => serde_json::from_slice(b)
            .map_err(|e| Error::Invalid(format!("GGUF export: tokenizer_config.json: {e}")))?,
        None => json!({}),
    };
    let model = &tj["model"];
    let byte_level = tj["decoder"]["type"] == "ByteLevel";
    if model["type"] != "BPE" || !byte_level {
        return Err(bad(format!(
            "a {} tokenizer{} is not written to GGUF yet (byte-level BPE is)",
            model["type"].as_str().unwrap_or("(unknown)"),
            if byte_level {
                ""
            } else {
                " without byte-level decoding"
            }
        )));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("`model.vocab` is not a map".into()))?;
    let added: Vec<(usize, String, bool)> = tj["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t["id"].as_u64()? as usize,
                        t["content"].as_str()?.to_string(),
                        t["special"].as_bool().unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let largest = vocab
        .values()
        .filter_map(Value::as_u64)
        .map(|i| i as usize)
        .chain(added.iter().map(|a| a.0))
        .max()
        .unwrap_or(0);
    let n = config.vocab_size.max(largest + 1);
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![UNUSED as i32; n];
    for (tok, id) in vocab {
        let id = id.as_u64().ok_or_else(|| bad(format!("id of `{tok}`")))? as usize;
        tokens[id] = Some(tok.clone());
        types[id] = NORMAL as i32;
    }
    for (id, content, special) in &added {
        tokens[*id] = Some(content.clone());
        types[*id] = if *special || looks_special(content) {
            CONTROL
        } else {
            USER_DEFINED
        } as i32;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or_else(|| bad("`model.merges` is not a list".into()))?
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(p) if p.len() == 2 => {
                // A space inside a part is written as U+0120 (a space moved up by 256), as the converter does.
                let part = |v: &Value| {
                    v.as_str()
                        .map(|s| s.replace(' ', "\u{0120}"))
                        .ok_or_else(|| bad("a merge part is not a string".into()))
                };
                Ok(format!("{} {}", part(&p[0])?, part(&p[1])?))
            }
            _ => Err(bad("a merge is neither `a b` nor [a, b]".into())),
        })
        .collect::<Result<_>>()?;

    let mut meta: Vec<(String, Meta)> = vec![
        ("tokenizer.ggml.model".into(), Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Meta::Str(String::new())),
        ("tokenizer.ggml.tokens".into(), Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type".into(), Meta::I32s(types)),
        ("tokenizer.ggml.merges".into(), Meta::Strs(merges)),
    ];
    // Special tokens: tokenizer_config.json's (matched among the added tokens), then
    // config.json's ids, the first found winning.
    let raw = &config.raw;
    for (typ, key) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
        ("cls", "cls_token_id"),
        ("mask", "mask_token_id"),
    ] {
        let entry = &tc[format!("{typ}_token")];
        let content = entry.as_str().or_else(|| entry["content"].as_str());
        let from_tokenizer = content
            .and_then(|c| added.iter().find(|a| a.1 == c))
            .map(|a| a.0 as u64);
        let from_config = raw[format!("{typ}_token_id")].as_u64();
        if let Some(id) = from_tokenizer.or(from_config).filter(|&i| (i as usize) < n) {
            meta.push((format!("tokenizer.ggml.{key}"), Meta::U32(id as u32)));
        }
    }
    // Whether BOS/EOS are added: the post-processor's template, else tokenizer_config.json.
    let mut add: Vec<(&str, bool)> = vec![];
    let pp = &tj["post_processor"];
    let processors = pp["processors"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![pp.clone()]);
    for p in &processors {
        match p["type"].as_str() {
            Some("ByteLevel") => {
                add.push(("bos", false));
                add.push(("eos", false));
            }
            Some("TemplateProcessing") => {
                let single = p["single"].as_array().cloned().unwrap_or_default();
                let special =
                    |v: Option<&Value>| v.is_some_and(|v| v.get("SpecialToken").is_some());
                if single.len() > 1 {
                    add.push(("bos", special(single.first())));
                    add.push(("eos", special(single.last())));
                }
            }
            _ => {}
        }
    }
    for typ in ["bos", "eos"] {
        let set = add.iter().find(|(t, _)| *t == typ).map(|(_, v)| *v);
        if let Some(v) = set.or_else(|| tc[format!("add_{typ}_token")].as_bool()) {
            meta.push((format!("tokenizer.ggml.add_{typ}_token"), Meta::Bool(v)));
        }
    }
    let template = tc["chat_template"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            t.chat_template_jinja
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .or_else(|| {
            let j: Value = serde_json::from_slice(t.chat_template_json.as_ref()?).ok()?;
            j["chat_template"].as_str().map(str::to_string)
        });
    if let Some(template) = template {
        meta.push(("tokenizer.chat_template".into(), Meta::Str(template)));
    }
    // The llama converter carries `add_prefix_space` over where the tokenizer config says it.
    if config.model_type == "llama"
        && let Some(b) = tc["add_prefix_space"].as_bool()
    {
        meta.push(("tokenizer.ggml.add_space_prefix".into(), Meta::Bool(b)));
    }
    meta[1].1 = Meta::Str(pre_name(&tj, &meta)?.into());
    Ok(meta)
}

/// The llama.cpp pre-tokenizer whose tokenizer, built from this metadata, splits
/// [`CHECK_TEXT`] into the same ids as the original.
fn pre_name(original: &Value, meta: &[(String, Meta)]) -> Result<&'static str> {
    let encode = |json: &[u8]| -> Option<Vec<u32>> {
        let t = tokenizers::Tokenizer::from_bytes(json).ok()?;
        Some(t.encode(CHECK_TEXT, false).ok()?.get_ids().to_vec())
    };
    let want = encode(&serde_json::to_vec(original).expect("JSON values serialize"))
        .ok_or_else(|| Error::Invalid("GGUF export: tokenizer.json does not load".into()))?;
    for pre in PRE_NAMES {
        let mut metadata: Vec<(String, Value)> =
            meta.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        metadata[1].1 = json!(pre);
        let h = GgufHeader {
            file: "export".into(),
            version: 3,
            metadata,
            tensors: vec![],
            data_offset: 0,
        };
        let files = tokenizer_files(&h)?.expect("the metadata names a tokenizer");
        if encode(&files.tokenizer_json).as_ref() == Some(&want) {
            return Ok(pre);
        }
    }
    Err(Error::Invalid(format!(
        "GGUF export: the tokenizer splits text unlike every pre-tokenizer hubscope writes ({})",
        PRE_NAMES.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Tokenizer, TokenizerFiles};

    fn header(pre: &str, add_bos: bool) -> GgufHeader {
        let meta = |k: &str, v: Value| (k.to_string(), v);
        GgufHeader {
            file: "t.gguf".into(),
            version: 3,
            metadata: vec![
                meta("tokenizer.ggml.model", json!("gpt2")),
                meta("tokenizer.ggml.pre", json!(pre)),
                meta("tokenizer.ggml.tokens", json!(["1", "2", "12", "<s>", "a"])),
                meta("tokenizer.ggml.token_type", json!([1, 1, 1, 3, 1])),
                meta("tokenizer.ggml.merges", json!(["1 2"])),
                meta("tokenizer.ggml.bos_token_id", json!(3)),
                meta("tokenizer.ggml.add_bos_token", json!(add_bos)),
            ],
            tensors: vec![],
            data_offset: 0,
        }
    }

    fn encode(h: &GgufHeader, text: &str) -> Vec<u32> {
        let files = tokenizer_files(h).unwrap().unwrap();
        let t = Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: &files.tokenizer_json,
            tokenizer_config: files.tokenizer_config.as_deref(),
            chat_template_jinja: None,
            chat_template_json: None,
        })
        .unwrap();
        t.encode(text, true).unwrap()
    }

    #[test]
    fn pre_tokenizers_split_digits_as_llama_cpp_does() {
        // SmolLM's splits every digit; GPT-2's keeps a run of digits for BPE to merge; Qwen's
        // splits digits too; control tokens are special tokens; BOS where the file asks.
        assert_eq!(encode(&header("smollm", false), "12"), vec![0, 1]);
        assert_eq!(encode(&header("gpt-2", false), "12"), vec![2]);
        assert_eq!(encode(&header("qwen2", false), "12<s>"), vec![0, 1, 3]);
        assert_eq!(encode(&header("gpt-2", true), "a"), vec![3, 4]);
        let e = tokenizer_files(&header("falcon", false)).unwrap_err();
        assert!(e.to_string().contains("pre-tokenizer `falcon`"), "{e}");
    }
}
