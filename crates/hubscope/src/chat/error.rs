//! Errors of the OpenAI-compatible API in OpenAI's JSON shape
//! (`{"error": {"message", "type", "param", "code"}}`) with the HTTP status its clients expect.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    kind: &'static str,
    pub param: Option<String>,
    code: Option<&'static str>,
    retry_after: Option<u64>,
}

impl ApiError {
    /// 400: a bad request, naming the field at fault.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
            retry_after: None,
        }
    }

    /// 400: a body that is not JSON (or not an object).
    pub fn malformed(message: impl Into<String>) -> Self {
        ApiError {
            param: None,
            ..Self::invalid("", message)
        }
    }

    /// 400: prompt plus completion past the model's context.
    pub fn context_length(max: usize, prompt: usize, completion: usize) -> Self {
        ApiError {
            code: Some("context_length_exceeded"),
            ..Self::invalid(
                "messages",
                format!(
                    "This model's maximum context length is {max} tokens. However, you \
                     requested {} tokens ({prompt} in the messages, {completion} in the \
                     completion). Please reduce the length of the messages or completion.",
                    prompt + completion
                ),
            )
        }
    }

    /// 404: no model of that name is served.
    pub fn unknown_model(name: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: Some("model_not_found"),
            ..Self::invalid(
                "model",
                format!("The model `{name}` does not exist or is not served here."),
            )
        }
    }

    /// 401: the key is missing or wrong (the key itself is never repeated).
    pub fn unauthorized() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            param: None,
            code: Some("invalid_api_key"),
            ..Self::invalid(
                "",
                "Incorrect or missing API key: send `Authorization: Bearer KEY` with the key \
                 this server was started with.",
            )
        }
    }

    /// 429: the queue is full; try again after `retry_after` seconds.
    pub fn busy(retry_after: u64) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too many requests are queued; retry after a moment.".into(),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
            retry_after: Some(retry_after),
        }
    }

    /// 500: the engine failed (a device error), or has stopped.
    pub fn server(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
