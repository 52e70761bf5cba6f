//! A GGUF file's tokenizer as the tokenizer files a Hugging Face folder holds
//! (`tokenizer.json`, `tokenizer_config.json`), built from its metadata: the vocabulary, merges
//! and token types, the pre-tokenizer llama.cpp names (`tokenizer.ggml.pre`), BOS/EOS and the
//! chat template. Byte-level BPE (`tokenizer.ggml.model = gpt2`) is what llama-, Qwen- and
//! SmolLM-family GGUF files carry; SentencePiece vocabularies (`llama`) are refused by name.

use serde_json::{Value, json};

use crate::bundle::TokenizerBytes;
use crate::error::{Error, Result};
use crate::gguf::GgufHeader;

/// llama.cpp's token types (`llama_token_type`): control tokens are special, user-defined ones
/// are added tokens matched before BPE.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

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
