//! OpenAI response bodies from the engine's tokens: a whole `chat.completion` or
//! `text_completion`, or the chunks of a stream, with `logprobs` in each endpoint's format,
//! `finish_reason` and `usage`.

use std::sync::Arc;

use hubscope_core::generate::FinishReason;
use hubscope_core::sequence::{Chosen, TokenLogprob};
use hubscope_core::text::Tokenizer;
use serde_json::{Value, json};

use super::request::Endpoint;

/// What every object of one response shares.
pub struct Reply {
    pub endpoint: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub tokenizer: Arc<Tokenizer>,
    /// Streams with `include_usage` carry `"usage": null` on every chunk but the last.
    pub usage_field: bool,
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
}

impl Usage {
    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// OpenAI's two reasons: a stop (EOS or stop string) or the length limit.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::StopString | FinishReason::Stop => "stop",
    }
}

impl Reply {
    fn object(&self, stream: bool) -> &'static str {
        match (self.endpoint, stream) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    /// The text of one token as a client reads it (decoded, not the vocabulary entry).
    fn token_text(&self, t: &TokenLogprob) -> String {
        self.tokenizer
            .decode(&[t.id], false)
            .unwrap_or_else(|_| t.token.clone())
    }

    fn chat_logprob(&self, c: &Chosen) -> Option<Value> {
        let entry = |t: &TokenLogprob| {
            let text = self.token_text(t);
            json!({"token": text, "logprob": t.logprob, "bytes": text.as_bytes()})
        };
        let mut v = entry(c.logprob.as_ref()?);
        v["top_logprobs"] = c.top_logprobs.iter().map(entry).collect();
        Some(v)
    }

    /// The legacy completions format for a run of tokens, offsets counted from `offset`.
    fn completion_logprobs(&self, tokens: &[Chosen], mut offset: usize) -> Option<Value> {
        let (mut toks, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for c in tokens {
            let l = c.logprob.as_ref()?;
            let text = self.token_text(l);
            offsets.push(offset);
            offset += text.len();
            toks.push(text);
            lps.push(l.logprob);
            let top: serde_json::Map<String, Value> = c
                .top_logprobs
                .iter()
                .map(|t| (self.token_text(t), json!(t.logprob)))
                .collect();
            tops.push(Value::Object(top));
        }
        Some(
            json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}),
        )
    }

    fn envelope(&self, stream: bool, choice: Value) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(stream),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": Value::Null,
            "choices": [choice],
        });
        if stream && self.usage_field {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The whole response of a non-streamed request.
    pub fn whole(&self, tokens: &[Chosen], finish: FinishReason, usage: Usage) -> Value {
        let text: String = tokens.iter().map(|c| c.text.as_str()).collect();
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": Value::Null},
                "logprobs": tokens.first().and_then(|f| f.logprob.as_ref()).map(|_| json!({
                    "content": tokens.iter().filter_map(|c| self.chat_logprob(c)).collect::<Vec<_>>(),
                    "refusal": Value::Null,
                })),
                "finish_reason": finish_reason(finish),
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": text,
                "logprobs": self.completion_logprobs(tokens, 0),
                "finish_reason": finish_reason(finish),
            }),
        };
        let mut v = self.envelope(false, choice);
        v["usage"] = usage.json();
        v
    }

    /// A stream's first chunk (chat only): the assistant's role.
    pub fn role_chunk(&self) -> Option<Value> {
        (self.endpoint == Endpoint::Chat).then(|| {
            self.envelope(
                true,
                json!({"index": 0, "delta": {"role": "assistant", "content": ""},
                        "logprobs": Value::Null, "finish_reason": Value::Null}),
            )
        })
    }

    /// The chunk of one token; `offset`: bytes of text streamed before it (completions'
    /// `text_offset`).
    pub fn token_chunk(&self, c: &Chosen, offset: usize) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "delta": {"content": c.text},
                "logprobs": self.chat_logprob(c).map(|l| json!({"content": [l], "refusal": Value::Null})),
                "finish_reason": Value::Null,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": c.text,
                "logprobs": self.completion_logprobs(std::slice::from_ref(c), offset),
                "finish_reason": Value::Null,
            }),
        };
        self.envelope(true, choice)
    }

    /// The chunk that ends a stream's choice.
    pub fn finish_chunk(&self, finish: FinishReason) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({"index": 0, "delta": {}, "logprobs": Value::Null,
                                     "finish_reason": finish_reason(finish)}),
            Endpoint::Completions => json!({"index": 0, "text": "", "logprobs": Value::Null,
                                            "finish_reason": finish_reason(finish)}),
        };
        self.envelope(true, choice)
    }

    /// With `stream_options.include_usage`: the last chunk, no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        let mut v = self.envelope(true, Value::Null);
        v["choices"] = json!([]);
        v["usage"] = usage.json();
        v
    }
}
