//! Generation on a server instead of in the page: the OpenAI API of `hubscope serve --chat`
//! (or any OpenAI-compatible server: vLLM, llama-server), so a weak device uses a strong
//! machine's model. The reply streams as server-sent events into the page; Stop cancels the
//! read, which closes the connection and ends the generation on the server.

use js_sys::{Reflect, Uint8Array};
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestInit, Response};

use hubscope_core::prompt::Prompt;

use crate::error::AppError;
use crate::fetch::{FetchError, js_err, now_ms};
use crate::url::UrlValue;

/// Where the Generate tab runs the model (the `run_on` URL key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOn {
    Page,
    Server,
}

impl UrlValue for RunOn {
    fn to_url(&self) -> String {
        match self {
            RunOn::Page => "page",
            RunOn::Server => "server",
        }
        .into()
    }
    fn from_url(s: &str) -> Option<Self> {
        match s {
            "page" => Some(RunOn::Page),
            "server" => Some(RunOn::Server),
            _ => None,
        }
    }
}

/// One request: the model as the server names it, the prompt (a chat prompt goes as its
/// messages, for the server's chat template), the form's sampling settings.
pub struct Ask<'a> {
    pub server: &'a str,
    pub key: &'a str,
    pub model: &'a str,
    pub prompt: &'a Prompt,
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub max_tokens: usize,
}

/// How a server run ended.
pub struct Answered {
    /// `finish_reason` as the server said it (`stop`, `length`), or `cancelled`.
    pub finish: String,
    pub tokens: usize,
    /// Tokens per second after the first.
    pub decode_tok_s: f64,
}

fn other(e: wasm_bindgen::JsValue) -> AppError {
    AppError::Fetch(FetchError::Other(js_err(e)))
}

/// POST the request and stream the reply's text to `on_text`; `cancel` is asked between reads.
pub async fn ask(
    a: &Ask<'_>,
    on_text: &mut dyn FnMut(&str),
    cancel: &dyn Fn() -> bool,
) -> Result<Answered, AppError> {
    let base = a.server.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    let mut body = json!({
        "model": a.model, "max_tokens": a.max_tokens, "temperature": a.temperature,
        "stream": true, "stream_options": {"include_usage": true},
    });
    if let Some(k) = a.top_k {
        body["top_k"] = json!(k);
    }
    if let Some(p) = a.top_p {
        body["top_p"] = json!(p);
    }
    let url = if a.prompt.chat {
        body["messages"] = json!(a.prompt.messages());
        format!("{base}/v1/chat/completions")
    } else {
        body["prompt"] = json!(a.prompt.text);
        format!("{base}/v1/completions")
    };
    let headers = Headers::new().map_err(other)?;
    headers
        .set("Content-Type", "application/json")
        .map_err(other)?;
    if !a.key.is_empty() {
        headers
            .set("Authorization", &format!("Bearer {}", a.key))
            .map_err(other)?;
    }
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&body.to_string().into());
    let req = Request::new_with_str_and_init(&url, &init).map_err(other)?;
    let window = web_sys::window().ok_or_else(|| AppError::Model("no window".into()))?;
    let resp: Response = JsFuture::from(window.fetch_with_request(&req))
        .await
        .map_err(|e| AppError::Fetch(FetchError::Network(format!("{url}: {}", js_err(e)))))?
        .dyn_into()
        .map_err(other)?;
    if !resp.ok() {
        // OpenAI's error object says why (unknown model, bad key, context length, busy).
        let text = match resp.text() {
            Ok(p) => JsFuture::from(p)
                .await
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let why = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(AppError::Model(format!(
            "{url}: HTTP {} — {why}",
            resp.status()
        )));
    }
    let reader: web_sys::ReadableStreamDefaultReader = resp
        .body()
        .ok_or_else(|| AppError::Model(format!("{url}: empty reply")))?
        .get_reader()
        .dyn_into()
        .map_err(|e| other(e.into()))?;
    let mut pending: Vec<u8> = vec![];
    let mut out = Answered {
        finish: "cancelled".into(),
        tokens: 0,
        decode_tok_s: 0.0,
    };
    let (mut first, mut last) = (None, 0.0);
    'read: loop {
        if cancel() {
            let _ = reader.cancel();
            break;
        }
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| AppError::Fetch(FetchError::Network(js_err(e))))?;
        if Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
        {
            break;
        }
        let value = Reflect::get(&chunk, &"value".into()).map_err(other)?;
        pending.extend_from_slice(&Uint8Array::new(&value).to_vec());
        // Whole events only: each ends with a blank line.
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    break 'read;
                }
                let v: Value = serde_json::from_str(data)
                    .map_err(|e| AppError::Model(format!("{url}: a bad event: {e}")))?;
                if let Some(m) = v["error"]["message"].as_str() {
                    return Err(AppError::Model(format!("{url}: {m}")));
                }
                let choice = &v["choices"][0];
                let piece = choice["delta"]["content"]
                    .as_str()
                    .or(choice["text"].as_str())
                    .unwrap_or("");
                if !piece.is_empty() {
                    let now = now_ms();
                    first.get_or_insert(now);
                    last = now;
                    out.tokens += 1;
                    on_text(piece);
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    out.finish = f.to_string();
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    out.tokens = n as usize;
                }
            }
        }
    }
    if let Some(f) = first {
        if last > f && out.tokens > 1 {
            out.decode_tok_s = (out.tokens - 1) as f64 / ((last - f) / 1000.0);
        }
    }
    Ok(out)
}
