//! The HTTP side of the OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions`
//! and `POST /v1/completions`. A request is checked (key, body, model, context), encoded with
//! the model's tokenizer and chat template, queued for the engine, and answered whole or as
//! server-sent events ending in `data: [DONE]`. Dropping the answer (a client that went away)
//! drops the engine's receiver, which takes the sequence out of the batch.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hubscope_core::Error as CoreError;
use hubscope_core::generate::FinishReason;
use hubscope_core::prompt::{encode_chat, encode_plain};
use hubscope_core::sampling::{Overrides, Sampler};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::engine::{Event, Job, Refused};
use super::error::ApiError;
use super::request::{self, Endpoint, Input, Request};
use super::response::{Reply, Usage};
use super::{ChatState, unix_now};

/// The API's routes, for merging into the server's router.
pub fn router<S: Clone + Send + Sync + 'static>(state: Arc<ChatState>) -> Router<S> {
    Router::new()
        .route("/v1/models", get(models).options(preflight))
        .route("/v1/chat/completions", post(chat).options(preflight))
        .route("/v1/completions", post(completions).options(preflight))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(cors))
        .with_state(state)
}

/// Any origin may call the API (a page on another machine uses this server's model; the key,
/// when set, is what guards it), as OpenAI's API and llama-server allow.
async fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    r
}

/// The CORS preflight of a cross-origin POST with a JSON body and a key.
async fn preflight() -> Response {
    (
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
        "",
    )
        .into_response()
}

fn authorize(s: &ChatState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &s.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if g.as_bytes() == key.as_bytes() => Ok(()),
        _ => Err(ApiError::unauthorized()),
    }
}

async fn models(State(s): State<Arc<ChatState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers) {
        return e.into_response();
    }
    let mut data: Vec<Value> = vec![];
    for m in &s.models {
        data.push(
            json!({"id": m.name, "object": "model", "created": s.created,
                         "owned_by": "hubscope", "max_model_len": m.max_positions}),
        );
        for a in &m.adapters {
            data.push(json!({"id": format!("{}:{a}", m.name), "object": "model",
                             "created": s.created, "owned_by": "hubscope", "parent": m.name,
                             "max_model_len": m.max_positions}));
        }
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The engine's counters in Prometheus' text format (as vLLM and llama-server serve them).
async fn metrics(State(s): State<Arc<ChatState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&s, &headers) {
        return e.into_response();
    }
    let m = &s.engine.metrics;
    let mut out = String::new();
    for (name, kind, help, v) in [
        (
            "prompt_tokens_total",
            "counter",
            "Prompt tokens prefilled.",
            &m.prompt_tokens,
        ),
        (
            "generation_tokens_total",
            "counter",
            "Tokens generated.",
            &m.generated_tokens,
        ),
        (
            "decode_steps_total",
            "counter",
            "Batched decode steps.",
            &m.decode_steps,
        ),
        (
            "decode_rows_total",
            "counter",
            "Sequences advanced by decode steps.",
            &m.decode_rows,
        ),
        (
            "largest_batch",
            "gauge",
            "Most sequences decoded in one step.",
            &m.largest_batch,
        ),
        (
            "requests_running",
            "gauge",
            "Sequences in the batch.",
            &m.running,
        ),
        (
            "requests_cancelled_total",
            "counter",
            "Requests whose client went away.",
            &m.cancelled,
        ),
    ] {
        let v = v.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP hubscope_{name} {help}\n# TYPE hubscope_{name} {kind}\nhubscope_{name} {v}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn chat(State(s): State<Arc<ChatState>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(s, headers, body, Endpoint::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(s): State<Arc<ChatState>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(s, headers, body, Endpoint::Completions)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A core error in a request's settings, as a 400 naming the field.
fn settings_error(e: CoreError) -> ApiError {
    match e {
        CoreError::InvalidField { field, message, .. } => {
            ApiError::invalid(&field, format!("`{field}`: {message}"))
        }
        e => ApiError::invalid("", e.to_string()),
    }
}

/// The prompt's ids, encoded as the core encodes every prompt (`prompt::encode_chat` for
/// messages, `encode_plain` for a raw prompt).
fn encode(s: &ChatState, model: usize, req: &Request) -> Result<Vec<u32>, ApiError> {
    let t = &s.models[model].tokenizer;
    let (encoded, field) = match &req.input {
        Input::Chat(messages) => {
            if !t.has_chat_template() {
                return Err(ApiError::invalid(
                    "messages",
                    format!(
                        "The model `{}` has no chat template; use /v1/completions with a prompt.",
                        req.model
                    ),
                ));
            }
            (encode_chat(t, messages), "messages")
        }
        Input::Text(p) => (encode_plain(t, p), "prompt"),
    };
    encoded
        .map(|e| e.ids)
        .map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// `NAME` (a base model) or `NAME:ADAPTER`: the model's index and the adapter's (0: none).
fn find_model(s: &ChatState, name: &str) -> Result<(usize, usize), ApiError> {
    if let Some(m) = s.models.iter().position(|m| m.name == name) {
        return Ok((m, 0));
    }
    if let Some((base, adapter)) = name.rsplit_once(':') {
        if let Some(m) = s.models.iter().position(|m| m.name == base) {
            if let Some(a) = s.models[m].adapters.iter().position(|a| a == adapter) {
                return Ok((m, a + 1));
            }
        }
    }
    Err(ApiError::unknown_model(name))
}

/// A response id unique within this server's life.
fn next_id(endpoint: Endpoint) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completions => "cmpl",
    };
    format!(
        "{prefix}-{:x}{:06x}",
        unix_now().as_secs(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn answer(
    s: Arc<ChatState>,
    headers: HeaderMap,
    body: Bytes,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    authorize(&s, &headers)?;
    let req = request::parse(&body, endpoint)?;
    let (model, adapter) = find_model(&s, &req.model)?;
    let served = &s.models[model];
    let prompt = encode(&s, model, &req)?;
    let room = served.max_positions.saturating_sub(prompt.len());
    let max_tokens = req.max_tokens.unwrap_or(room);
    if max_tokens == 0 || max_tokens > room {
        return Err(ApiError::context_length(
            served.max_positions,
            prompt.len(),
            max_tokens.max(1),
        ));
    }
    let seed = req.seed.unwrap_or_else(|| unix_now().as_nanos() as u64);
    let mut generation = served.generation.clone();
    if req.ignore_eos {
        generation.eos_token_ids.clear();
    }
    let generation = generation
        .with_overrides(&Overrides {
            temperature: req.temperature,
            top_k: req.top_k,
            top_p: req.top_p,
            repetition_penalty: None,
            max_new_tokens: Some(max_tokens),
            seed: Some(seed),
        })
        .map_err(settings_error)?;
    let (events, mut rx) = unbounded_channel();
    s.engine
        .submit(Job {
            model,
            adapter,
            prompt: prompt.clone(),
            sampler: Sampler::new(generation),
            logprobs: req.logprobs,
            stops: req.stop.clone(),
            events,
        })
        .map_err(|r| match r {
            Refused::Busy => ApiError::busy(1),
            Refused::Stopped => ApiError::server("The engine has stopped."),
        })?;
    let reply = Reply {
        endpoint,
        id: next_id(endpoint),
        created: unix_now().as_secs(),
        model: served.name.clone(),
        tokenizer: served.tokenizer.clone(),
        usage_field: req.include_usage,
    };
    // The first event decides the status: a failure before any token is an error response.
    let first = match rx.recv().await {
        Some(Event::Token(c)) => c,
        Some(Event::Failed(e)) => return Err(ApiError::server(e)),
        None => return Err(ApiError::server("The engine has stopped.")),
    };
    let usage_of = |completion| Usage {
        prompt: prompt.len(),
        completion,
    };
    if !req.stream {
        let mut tokens = vec![first];
        loop {
            if let Some(f) = tokens.last().and_then(|c| c.finish) {
                return Ok(Json(reply.whole(&tokens, f, usage_of(tokens.len()))).into_response());
            }
            match rx.recv().await {
                Some(Event::Token(c)) => tokens.push(c),
                Some(Event::Failed(e)) => return Err(ApiError::server(e)),
                None => return Err(ApiError::server("The engine has stopped.")),
            }
        }
    }
    let mut st = Stream {
        rx,
        reply,
        include_usage: req.include_usage,
        prompt: prompt.len(),
        count: 0,
        offset: 0,
        out: VecDeque::new(),
        done: false,
    };
    if let Some(c) = st.reply.role_chunk() {
        st.out.push_back(c.to_string());
    }
    st.absorb(Event::Token(first));
    let events = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(data) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(data)), st));
            }
            if st.done {
                return None;
            }
            match st.rx.recv().await {
                Some(ev) => st.absorb(ev),
                None => st.done = true,
            }
        }
    });
    Ok(Sse::new(events).into_response())
}

/// A streamed answer: engine events in, SSE data lines out.
struct Stream {
    rx: UnboundedReceiver<Event>,
    reply: Reply,
    include_usage: bool,
    prompt: usize,
    count: usize,
    /// Bytes of text streamed so far.
    offset: usize,
    out: VecDeque<String>,
    done: bool,
}

impl Stream {
    fn absorb(&mut self, ev: Event) {
        match ev {
            Event::Token(c) => {
                self.count += 1;
                if !c.text.is_empty() || c.logprob.is_some() {
                    self.out
                        .push_back(self.reply.token_chunk(&c, self.offset).to_string());
                    self.offset += c.text.len();
                }
                if let Some(f) = c.finish {
                    self.end(f);
                }
            }
            Event::Failed(e) => {
                self.out.push_back(ApiError::server(e).body().to_string());
                self.out.push_back("[DONE]".into());
                self.done = true;
            }
        }
    }

    fn end(&mut self, f: FinishReason) {
        self.out.push_back(self.reply.finish_chunk(f).to_string());
        if self.include_usage {
            let usage = Usage {
                prompt: self.prompt,
                completion: self.count,
            };
            self.out
                .push_back(self.reply.usage_chunk(usage).to_string());
        }
        self.out.push_back("[DONE]".into());
        self.done = true;
    }
}
