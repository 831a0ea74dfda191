//! HTTP routes: the Voxbridge translation API (`/v1/…`) and a LibreTranslate-compatible API
//! (`/translate`, `/languages`) so existing LibreTranslate clients work unchanged. Voxbridge
//! errors are `{"error": {"code", "message"}}` ([`ApiError`]); the LibreTranslate routes answer
//! errors LibreTranslate's way, `{"error": "message"}`, with the same statuses.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, histogram::Histogram};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use voxbridge_shared::languages::{self, LANGUAGES, Language};

use crate::error::ApiError;
use crate::mt_client::MtClient;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_texts: usize,
    pub max_targets: usize,
    pub timeout: Duration,
}

/// Label set for HTTP metrics (fixed routes, status classes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
    pub code: &'static str,
}

/// Edge HTTP metrics.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    pub requests: Family<RouteLabel, Counter>,
    pub translate_duration_seconds: Histogram,
}

impl HttpMetrics {
    /// Registers under `voxbridge_edge_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            translate_duration_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
            ),
        };
        let r = registry.sub_registry_with_prefix("voxbridge_edge");
        r.register(
            "http_requests",
            "HTTP API requests by route and error code (\"ok\" on success)",
            m.requests.clone(),
        );
        r.register(
            "translate_duration_seconds",
            "Time from receiving a translation request to answering it",
            m.translate_duration_seconds.clone(),
        );
        m
    }
}

/// Shared state of the routes.
#[derive(Debug, Clone)]
pub struct AppState {
    pub mt: MtClient,
    pub limits: Limits,
    pub metrics: HttpMetrics,
}

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/languages", get(v1_languages))
        .route("/v1/translate", post(v1_translate))
        .route("/languages", get(libre_languages))
        .route("/translate", post(libre_translate))
        .with_state(state)
}

/// One string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
struct TranslateBody {
    q: OneOrMany,
    source: String,
    target: OneOrMany,
}

#[derive(Debug, Serialize)]
struct LanguageOut {
    code: &'static str,
    flores: &'static str,
    name: &'static str,
}

impl From<&Language> for LanguageOut {
    fn from(l: &Language) -> Self {
        Self {
            code: l.bcp47,
            flores: l.flores,
            name: l.name,
        }
    }
}

/// `GET /v1/languages`: every language the API accepts.
async fn v1_languages() -> Json<Vec<LanguageOut>> {
    Json(LANGUAGES.iter().map(LanguageOut::from).collect())
}

#[derive(Debug, Serialize)]
struct TranslateResponse {
    source: LanguageOut,
    results: Vec<TargetResult>,
}

#[derive(Debug, Serialize)]
struct TargetResult {
    target: LanguageOut,
    translations: Vec<String>,
    cached: Vec<bool>,
    model: Option<String>,
}

fn resolve(code: &str) -> Result<&'static Language, ApiError> {
    languages::resolve(code).map_err(|e| ApiError::UnknownLanguage(e.to_string()))
}

fn check_texts(texts: &[String], limits: &Limits) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::InvalidRequest(
            "q must hold at least one text".into(),
        ));
    }
    if texts.len() > limits.max_texts {
        return Err(ApiError::TooManyTexts {
            count: texts.len(),
            limit: limits.max_texts,
        });
    }
    for (index, text) in texts.iter().enumerate() {
        let chars = text.chars().count();
        if chars > limits.max_text_chars {
            return Err(ApiError::InputTooLong {
                index,
                chars,
                limit: limits.max_text_chars,
            });
        }
    }
    Ok(())
}

/// Translates `texts` into every target concurrently (each target is one batch).
async fn translate_all(
    state: &AppState,
    texts: Vec<String>,
    source: &'static Language,
    targets: Vec<&'static Language>,
) -> Result<Vec<TargetResult>, ApiError> {
    let calls = targets.iter().map(|target| {
        let texts = texts.clone();
        async move {
            let result = state
                .mt
                .translate(texts, source.flores, target.flores, state.limits.timeout)
                .await?;
            Ok::<_, ApiError>(TargetResult {
                target: LanguageOut::from(*target),
                translations: result.translations,
                cached: result.cached,
                model: result.model,
            })
        }
    });
    futures::future::try_join_all(calls).await
}

fn count(state: &AppState, route: &'static str, result: &Result<impl Sized, ApiError>) {
    let code = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    state
        .metrics
        .requests
        .get_or_create(&RouteLabel { route, code })
        .inc();
}

/// `POST /v1/translate` with `{q: string | [string], source, target: string | [string]}`.
async fn v1_translate(State(state): State<AppState>, body: Bytes) -> Response {
    let started = Instant::now();
    let result = async {
        let body: TranslateBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
        let source = resolve(&body.source)?;
        let targets = body
            .target
            .into_vec()
            .iter()
            .map(|t| resolve(t))
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() || targets.len() > state.limits.max_targets {
            return Err(ApiError::InvalidRequest(format!(
                "give 1 to {} target languages",
                state.limits.max_targets
            )));
        }
        let texts = body.q.into_vec();
        check_texts(&texts, &state.limits)?;
        let results = translate_all(&state, texts, source, targets).await?;
        Ok(TranslateResponse {
            source: LanguageOut::from(source),
            results,
        })
    }
    .await;
    count(&state, "v1_translate", &result);
    state
        .metrics
        .translate_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(response) => Json(response).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct LibreBody {
    q: OneOrMany,
    source: String,
    target: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default, rename = "api_key")]
    _api_key: Option<String>,
}

/// `POST /translate`, LibreTranslate-compatible: JSON or form body with `q`, `source`,
/// `target`, `format` (`text`). Answers `{"translatedText": string | [string]}`.
async fn libre_translate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let result = async {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body: LibreBody = if is_form {
            serde_urlencoded::from_bytes(&body)
                .map_err(|e| ApiError::InvalidRequest(format!("invalid form body: {e}")))?
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?
        };
        if let Some(format) = body.format.as_deref()
            && format != "text"
        {
            return Err(ApiError::InvalidRequest(format!(
                "format {format:?} is not supported; use \"text\""
            )));
        }
        if body.source.eq_ignore_ascii_case("auto") {
            return Err(ApiError::InvalidRequest(
                "source language detection (\"auto\") is not supported; give the source language".into(),
            ));
        }
        let source = resolve(&body.source)?;
        let target = resolve(&body.target)?;
        let single = matches!(body.q, OneOrMany::One(_));
        let texts = body.q.into_vec();
        check_texts(&texts, &state.limits)?;
        let mut results = translate_all(&state, texts, source, vec![target]).await?;
        let translations = results.pop().map(|r| r.translations).unwrap_or_default();
        Ok(if single {
            serde_json::json!({ "translatedText": translations.into_iter().next().unwrap_or_default() })
        } else {
            serde_json::json!({ "translatedText": translations })
        })
    }
    .await;
    count(&state, "libre_translate", &result);
    state
        .metrics
        .translate_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_libretranslate(),
    }
}

#[derive(Debug, Serialize)]
struct LibreLanguage {
    code: &'static str,
    name: &'static str,
    targets: Vec<&'static str>,
}

/// `GET /languages`, LibreTranslate-compatible.
async fn libre_languages() -> Json<Vec<LibreLanguage>> {
    let codes: Vec<&'static str> = LANGUAGES.iter().map(|l| l.bcp47).collect();
    Json(
        LANGUAGES
            .iter()
            .map(|l| LibreLanguage {
                code: l.bcp47,
                name: l.name,
                targets: codes.clone(),
            })
            .collect(),
    )
}
