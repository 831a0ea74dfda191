//! The browser client (`edge/static/`), compiled into the binary so a deployment is one file.
//! Plain ES modules: no build step. `/` serves `index.html` (live speech), `/files` `files.html`
//! (subtitle and audio files through the job API).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// `(file name, content type, content)` of every served file.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../static/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/app.js"),
    ),
    (
        "protocol.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/protocol.js"),
    ),
    (
        "pcm.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/pcm.js"),
    ),
    (
        "capture-worklet.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/capture-worklet.js"),
    ),
    (
        "files.html",
        "text/html; charset=utf-8",
        include_str!("../static/files.html"),
    ),
    (
        "files-app.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/files-app.js"),
    ),
    (
        "pickers.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/pickers.js"),
    ),
    (
        "jobs.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/jobs.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../static/style.css"),
    ),
];

/// Routes `/` and `/<file>` for the files above.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route("/files", get(|| async { file("files.html") }))
        .route(
            "/static/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
        .route(
            "/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Revalidate each time: a new edge version must not run with an old page.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        // Any `import … from "./x.js"` or `addModule("x.js")` in a served file names a served file.
        let served: Vec<&str> = FILES.iter().map(|(n, _, _)| *n).collect();
        for (name, _, body) in FILES {
            for quote in ['"', '\''] {
                for piece in body.split(quote) {
                    let piece = piece.trim_start_matches("./");
                    let looks_local = (piece.ends_with(".js") || piece.ends_with(".css"))
                        && !piece.contains('/')
                        && !piece.contains(' ');
                    if looks_local {
                        assert!(
                            served.contains(&piece),
                            "{name} refers to {piece}, which is not served"
                        );
                    }
                }
            }
        }
    }
}
