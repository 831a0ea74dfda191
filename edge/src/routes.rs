//! HTTP routes. Errors are JSON `{"error": {"code", "message"}}` with stable codes.

use axum::{Json, Router, extract::State, routing::get};
use serde::Serialize;
use voxbridge_shared::languages::LANGUAGES;
use voxbridge_shared::service::ServiceContext;

/// The API router.
pub fn router(ctx: ServiceContext) -> Router {
    Router::new()
        .route("/v1/languages", get(languages))
        .with_state(ctx)
}

#[derive(Debug, Serialize)]
struct LanguageOut {
    code: &'static str,
    flores: &'static str,
    name: &'static str,
}

/// `GET /v1/languages`: every language the API accepts.
async fn languages(State(_ctx): State<ServiceContext>) -> Json<Vec<LanguageOut>> {
    Json(
        LANGUAGES
            .iter()
            .map(|l| LanguageOut {
                code: l.bcp47,
                flores: l.flores,
                name: l.name,
            })
            .collect(),
    )
}
