//! Every API error, its stable code and its HTTP status, in one `IntoResponse` impl.
//! Body: `{"error": {"code": "...", "message": "..."}}`; 503 carries `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_S: u64 = 2;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    UnknownLanguage(String),
    #[error("{0}")]
    UnsupportedLanguage(String),
    #[error("text {index} has {chars} characters; the limit is {limit}")]
    InputTooLong {
        index: usize,
        chars: usize,
        limit: usize,
    },
    #[error("{count} texts in one request; the limit is {limit}")]
    TooManyTexts { count: usize, limit: usize },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the translation queue is full ({depth} waiting); retry later")]
    Overloaded { depth: u64 },
    #[error("no translation within {0} s")]
    Timeout(u64),
    #[error("translation service unavailable: {0}")]
    Unavailable(String),
    #[error("translation failed: {0}")]
    Upstream(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the file is {size} bytes; the limit is {limit}")]
    FileTooLarge { size: usize, limit: usize },
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Unauthorized(String),
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownLanguage(_) => "unknown_language",
            ApiError::UnsupportedLanguage(_) => "unsupported_language",
            ApiError::InputTooLong { .. } => "input_too_long",
            ApiError::TooManyTexts { .. } => "too_many_texts",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Upstream(_) => "translation_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::FileTooLarge { .. } => "file_too_large",
            ApiError::NotReady(_) => "job_not_finished",
            ApiError::Unauthorized(_) => "unauthorized",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownLanguage(_)
            | ApiError::UnsupportedLanguage(_)
            | ApiError::InputTooLong { .. }
            | ApiError::TooManyTexts { .. }
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Overloaded { .. } | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::FileTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotReady(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }

    /// Maps an error result from the MT worker.
    pub fn from_mt(code: &str, message: &str) -> Self {
        match code {
            "unsupported_language" => ApiError::UnsupportedLanguage(message.to_string()),
            "invalid_input" => ApiError::InvalidRequest(message.to_string()),
            "deadline_exceeded" => ApiError::Timeout(0),
            _ => ApiError::Upstream(format!("{code}: {message}")),
        }
    }

    fn with_retry_after(&self, mut response: Response) -> Response {
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }

    /// The LibreTranslate-compatible form of this error: `{"error": "message"}`.
    pub fn into_libretranslate(self) -> Response {
        let response = (
            self.status(),
            axum::Json(json!({ "error": self.to_string() })),
        )
            .into_response();
        self.with_retry_after(response)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        let response = (self.status(), axum::Json(body)).into_response();
        self.with_retry_after(response)
    }
}
