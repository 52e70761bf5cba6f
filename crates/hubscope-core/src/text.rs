//! Text in and out: the `tokenizer.json` tokenizer, the chat template (`chat_template.jinja`,
//! else `tokenizer_config.json`, else a processor's `chat_template.json`; rendered with
//! minijinja as transformers renders it with jinja2, `strftime_now` on the caller's clock), and
//! a streaming decoder that never splits a multi-byte character.

use minijinja::{Environment, ErrorKind, Value as JValue};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The files a tokenizer is read from, as bytes; only `tokenizer.json` is required.
#[derive(Default, Clone, Copy)]
pub struct TokenizerFiles<'a> {
    pub tokenizer_json: &'a [u8],
    pub tokenizer_config: Option<&'a [u8]>,
    /// What `save_pretrained` writes since transformers 4.43; wins over the config's template.
    pub chat_template_jinja: Option<&'a [u8]>,
    /// A processor's `{"chat_template": …}`, read when no other template exists.
    pub chat_template_json: Option<&'a [u8]>,
}

/// The names of the files above, in that order.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The local time, for templates that print today's date (`strftime_now`). The core has no
/// clock: the binary and the page pass one.
pub type Clock = fn() -> chrono::NaiveDateTime;

/// `strftime(format)` of a time, as Python's `datetime.strftime` (C locale); an unknown
/// directive is an error, never a panic.
pub fn strftime(t: &chrono::NaiveDateTime, format: &str) -> Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", t.format(format))
        .map_err(|_| Error::ChatTemplate(format!("strftime_now: bad format {format:?}")))?;
    Ok(out)
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    clock: Option<Clock>,
    /// Special-token strings the template may use (`bos_token`, `eos_token`, ...).
    special: Vec<(String, String)>,
    /// `eos_token` of tokenizer_config.json as an id, when it names a token.
    pub eos_token_id: Option<u32>,
}

/// `tokenizer_config.json` writes special tokens as a string or as `{"content": ...}`.
fn token_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// From the bytes of `tokenizer.json` and, optionally, `tokenizer_config.json`.
    pub fn from_bytes(tokenizer_json: &[u8], tokenizer_config: Option<&[u8]>) -> Result<Self> {
        Self::from_files(TokenizerFiles {
            tokenizer_json,
            tokenizer_config,
            ..Default::default()
        })
    }

    /// From a model's tokenizer files, the chat template chosen as transformers chooses it.
    pub fn from_files(files: TokenizerFiles<'_>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(files.tokenizer_json)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let cfg: Value = match files.tokenizer_config {
            Some(b) => {
                serde_json::from_slice(b).map_err(|e| Error::json("tokenizer_config.json", e))?
            }
            None => Value::Null,
        };
        let jinja = match files.chat_template_jinja {
            Some(b) => Some(
                String::from_utf8(b.to_vec())
                    .map_err(|_| Error::Invalid("chat_template.jinja: not UTF-8 text".into()))?,
            ),
            None => None,
        };
        let processor = match files.chat_template_json {
            Some(b) => {
                let v: Value =
                    serde_json::from_slice(b).map_err(|e| Error::json("chat_template.json", e))?;
                match v.get("chat_template") {
                    Some(Value::String(t)) => Some(t.clone()),
                    _ => {
                        return Err(Error::InvalidField {
                            file: "chat_template.json".into(),
                            field: "chat_template".into(),
                            message: "expected a string".into(),
                        });
                    }
                }
            }
            None => None,
        };
        let from_config = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: take "default".
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let chat_template = jinja.or(from_config).or(processor);
        let mut special = vec![];
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let Some(s) = cfg.get(key).and_then(token_string) {
                special.push((key.to_string(), s));
            }
        }
        let eos_token_id = special
            .iter()
            .find(|(k, _)| k == "eos_token")
            .and_then(|(_, s)| inner.token_to_id(s));
        Ok(Tokenizer {
            inner,
            chat_template,
            clock: None,
            special,
            eos_token_id,
        })
    }

    /// Token ids of `text`; `add_special_tokens` as in transformers' `tokenizer(text)`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The token's string form (as in the vocabulary), for logprob listings.
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The clock `strftime_now` reads (local time); without one, a template that asks for the
    /// date is an error.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = Some(clock);
    }

    /// Render the chat template, as `tokenizer.apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// The same with extra template variables, as transformers passes its `**kwargs` (e.g.
    /// `date_string` to pin Llama 3's date line).
    pub fn apply_chat_template_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, Value>,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            Error::ChatTemplate("this model has no chat template (chat_template.jinja, or chat_template in tokenizer_config.json); use a plain prompt".into())
        })?;
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<JValue, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let clock = self.clock;
        env.add_function(
            "strftime_now",
            move |fmt: String| -> std::result::Result<String, minijinja::Error> {
                let now = clock.ok_or_else(|| {
                    minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "strftime_now: no clock was given to the tokenizer",
                    )
                })?();
                strftime(&now, &fmt)
                    .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
            },
        );
        env.add_template("chat", template)
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        let mut ctx: serde_json::Map<String, Value> = self
            .special
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        ctx.insert(
            "messages".into(),
            serde_json::to_value(messages).expect("messages serialize"),
        );
        for (k, v) in extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(add_generation_prompt),
        );
        tmpl.render(JValue::from_serialize(&ctx))
            .map_err(|e| Error::ChatTemplate(e.to_string()))
    }
}

/// Turns generated ids into text increments. Holds back text while the decoded tail is an
/// incomplete UTF-8 sequence (shown as U+FFFD), so a character is never split.
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the window that is re-decoded for context (byte-level BPE merges spaces).
    prefix: usize,
    /// Ids up to here have been emitted.
    read: usize,
    skip_special: bool,
}

impl TextStream {
    pub fn new(skip_special: bool) -> Self {
        TextStream {
            ids: vec![],
            prefix: 0,
            read: 0,
            skip_special,
        }
    }

    /// Add one id; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let now = tok.decode(&self.ids[self.prefix..], self.skip_special)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&before) {
            let delta = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Whatever is still held back at the end of generation.
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let before = tok.decode(&self.ids[self.prefix..self.read], self.skip_special)?;
        let now = tok.decode(&self.ids[self.prefix..], self.skip_special)?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now
            .strip_prefix(before.as_str())
            .map(str::to_string)
            .unwrap_or_default())
    }
}
