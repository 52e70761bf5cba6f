//! OpenAI request bodies (`/v1/chat/completions`, `/v1/completions`) read into one typed
//! `Request`, every field checked with the range the OpenAI API documents and any error naming
//! the field, as OpenAI's own 400s do.

use hubscope_core::text::Message;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// What the model reads.
#[derive(Debug, Clone)]
pub enum Input {
    /// Messages for the model's chat template.
    Chat(Vec<Message>),
    /// A raw prompt.
    Text(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub model: String,
    pub input: Input,
    /// `max_completion_tokens` or `max_tokens`; None: up to the context limit.
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// An extension (vLLM's too): 0 or -1 turn it off.
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    /// Report the chosen token's log-probability and this many top ones.
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// An extension (vLLM's and llama-server's): generate past end-of-sequence tokens.
    pub ignore_eos: bool,
}

/// Parse and check a request body.
pub fn parse(body: &[u8], endpoint: Endpoint) -> Result<Request, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed(format!("The request body is not valid JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(ApiError::malformed(
            "The request body must be a JSON object.",
        ));
    };
    let f = Fields(&o);
    let model = f
        .string("model")?
        .ok_or_else(|| ApiError::invalid("model", "`model` is required."))?;
    let input = match endpoint {
        Endpoint::Chat => Input::Chat(messages(&o)?),
        Endpoint::Completions => Input::Text(prompt(&o)?),
    };
    if f.int("n", 1, 128)?.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "Only n = 1 is supported."));
    }
    for name in ["presence_penalty", "frequency_penalty"] {
        if f.number(name, -2.0, 2.0)?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::invalid(
                name,
                format!("`{name}` is not supported (only 0)."),
            ));
        }
    }
    for name in ["tools", "functions", "logit_bias"] {
        let empty = match o.get(name) {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            _ => false,
        };
        if !empty {
            return Err(ApiError::invalid(
                name,
                format!("`{name}` is not supported by this server."),
            ));
        }
    }
    if endpoint == Endpoint::Completions {
        if f.bool("echo")? == Some(true) {
            return Err(ApiError::invalid("echo", "`echo` is not supported."));
        }
        if f.string("suffix")?.is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid("suffix", "`suffix` is not supported."));
        }
        if f.int("best_of", 1, 20)?.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "best_of",
                "Only best_of = 1 is supported.",
            ));
        }
    }
    let max_tokens = match f.int("max_completion_tokens", 1, i64::MAX)? {
        Some(n) => Some(n),
        None => f.int("max_tokens", 1, i64::MAX)?,
    }
    .map(|n| n as usize);
    let logprobs = match endpoint {
        Endpoint::Chat => {
            let top = f.int("top_logprobs", 0, 20)?;
            match (f.bool("logprobs")?.unwrap_or(false), top) {
                (true, top) => Some(top.unwrap_or(0) as usize),
                (false, Some(t)) if t > 0 => {
                    return Err(ApiError::invalid(
                        "top_logprobs",
                        "`top_logprobs` needs `logprobs` set to true.",
                    ));
                }
                (false, _) => None,
            }
        }
        Endpoint::Completions => f.int("logprobs", 0, 5)?.map(|n| n as usize),
    };
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => {
            if !stream {
                return Err(ApiError::invalid(
                    "stream_options",
                    "`stream_options` is only allowed when `stream` is true.",
                ));
            }
            Fields(so).bool("include_usage")?.unwrap_or(false)
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` must be an object.",
            ));
        }
    };
    Ok(Request {
        model,
        input,
        max_tokens,
        temperature: f.number("temperature", 0.0, 2.0)?.map(|x| x as f32),
        top_p: f.number("top_p", 0.0, 1.0)?.map(|x| x as f32),
        top_k: f.int("top_k", -1, i64::MAX)?.map(|k| k.max(0) as usize),
        seed: f.int("seed", i64::MIN, i64::MAX)?.map(|s| s as u64),
        stop: stop(&o)?,
        logprobs,
        stream,
        include_usage,
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
    })
}

/// Typed reads of optional fields, each error naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(ApiError::invalid(
                name,
                format!("`{name}` must be a string, not {v}."),
            )),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(ApiError::invalid(
                name,
                format!("`{name}` must be true or false, not {v}."),
            )),
        }
    }

    fn number(&self, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if (min..=max).contains(&x) => Ok(Some(x)),
                Some(x) => Err(ApiError::invalid(
                    name,
                    format!("`{name}` is {x}; it must be between {min} and {max}."),
                )),
                None => Err(ApiError::invalid(
                    name,
                    format!("`{name}` must be a number, not {v}."),
                )),
            },
        }
    }

    fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(x) if x < min => Err(ApiError::invalid(
                    name,
                    format!("`{name}` is {x}, which is less than the minimum of {min}."),
                )),
                Some(x) if x > max => Err(ApiError::invalid(
                    name,
                    format!("`{name}` is {x}, which is more than the maximum of {max}."),
                )),
                Some(x) => Ok(Some(x)),
                None => Err(ApiError::invalid(
                    name,
                    format!("`{name}` must be an integer, not {v}."),
                )),
            },
        }
    }
}

/// `messages`: a non-empty array of `{role, content}`; content a string, null, or text parts.
fn messages(o: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(list)) = o.get("messages") else {
        return Err(ApiError::invalid(
            "messages",
            "`messages` is required: an array of {role, content} objects.",
        ));
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty.",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("messages[{i}]");
            let Value::Object(m) = m else {
                return Err(ApiError::invalid(&at, format!("`{at}` must be an object.")));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => r.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        &format!("{at}.role"),
                        format!("`{at}.role` is required (a string)."),
                    ));
                }
            };
            let content = match m.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => text_parts(parts, &format!("{at}.content"))?,
                Some(_) => {
                    return Err(ApiError::invalid(
                        &format!("{at}.content"),
                        format!("`{at}.content` must be a string or an array of text parts."),
                    ));
                }
            };
            Ok(Message { role, content })
        })
        .collect()
}

/// Content parts: only `{"type": "text", "text": …}`, joined.
fn text_parts(parts: &[Value], at: &str) -> Result<String, ApiError> {
    let mut out = String::new();
    for (j, p) in parts.iter().enumerate() {
        match (p.get("type").and_then(Value::as_str), p.get("text")) {
            (Some("text"), Some(Value::String(t))) => out.push_str(t),
            _ => {
                return Err(ApiError::invalid(
                    &format!("{at}[{j}]"),
                    format!("`{at}[{j}]`: only text parts are supported."),
                ));
            }
        }
    }
    Ok(out)
}

/// `prompt`: a string, or an array holding one string.
fn prompt(o: &Map<String, Value>) -> Result<String, ApiError> {
    match o.get("prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            Ok(a[0].as_str().unwrap_or_default().to_string())
        }
        Some(Value::Array(_)) => Err(ApiError::invalid(
            "prompt",
            "Only one prompt (a string) per request is supported.",
        )),
        _ => Err(ApiError::invalid(
            "prompt",
            "`prompt` is required (a string).",
        )),
    }
}

/// `stop`: a string or up to 4 strings.
fn stop(o: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    match o.get("stop") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if a.len() <= 4 => a
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::invalid("stop", "`stop` entries must be strings.")),
            })
            .collect(),
        Some(Value::Array(_)) => Err(ApiError::invalid(
            "stop",
            "`stop` takes at most 4 sequences.",
        )),
        Some(_) => Err(ApiError::invalid(
            "stop",
            "`stop` must be a string or an array of strings.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, e: Endpoint) -> ApiError {
        parse(body.as_bytes(), e).expect_err(body)
    }

    #[test]
    fn errors_name_the_field() {
        let c = Endpoint::Chat;
        assert_eq!(err("{", c).param, None);
        assert_eq!(err(r#"{"messages":[]}"#, c).param.as_deref(), Some("model"));
        let m = r#""model":"m","messages":[{"role":"user","content":"hi"}]"#;
        for (extra, param) in [
            (r#""max_tokens":-1"#, "max_tokens"),
            (r#""temperature":3"#, "temperature"),
            (r#""top_p":"x""#, "top_p"),
            (r#""n":2"#, "n"),
            (r#""top_logprobs":3"#, "top_logprobs"),
            (r#""stop":["a","b","c","d","e"]"#, "stop"),
            (
                r#""stream_options":{"include_usage":true}"#,
                "stream_options",
            ),
        ] {
            let e = err(&format!("{{{m},{extra}}}"), c);
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert_eq!(e.status, 400);
        }
        let e = err(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
            c,
        );
        assert_eq!(e.param.as_deref(), Some("messages[0].content[0]"));
    }

    #[test]
    fn a_full_request_reads_as_typed_fields() {
        let r = parse(
            br#"{"model":"m","messages":[{"role":"system","content":null},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
                "max_completion_tokens":5,"max_tokens":9,"temperature":0,"top_k":-1,"seed":-3,
                "stop":"\n","logprobs":true,"top_logprobs":2,"stream":true,"stream_options":{"include_usage":true},
                "ignore_eos":true}"#,
            Endpoint::Chat,
        )
        .unwrap();
        let Input::Chat(m) = &r.input else { panic!() };
        assert_eq!(m[1].content, "ab");
        assert_eq!(m[0].content, "");
        assert_eq!(r.max_tokens, Some(5));
        assert_eq!(r.top_k, Some(0));
        assert_eq!(r.seed, Some(-3i64 as u64));
        assert_eq!(r.stop, vec!["\n"]);
        assert_eq!(r.logprobs, Some(2));
        assert!(r.stream && r.include_usage && r.ignore_eos);
        let r = parse(
            br#"{"model":"m","prompt":["x"],"logprobs":0}"#,
            Endpoint::Completions,
        )
        .unwrap();
        assert_eq!(r.logprobs, Some(0));
        assert!(matches!(r.input, Input::Text(ref t) if t == "x"));
    }
}
