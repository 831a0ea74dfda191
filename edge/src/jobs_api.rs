//! Batch jobs over REST (docs/ARCHITECTURE.md, "Batch jobs"):
//!
//! - `POST /v1/jobs` — multipart form: `file` (the SRT/WebVTT file, or the audio file: WAV,
//!   MP3, FLAC, Ogg Vorbis, M4A/MP4 AAC-LC or raw AAC; with its file name), `to` (target
//!   languages, comma-separated or repeated), optional `from` (source language; subtitles
//!   default to English, audio is detected), `format` (`srt`|`vtt`), `kind`
//!   (`subtitles`|`audio`; by default a file whose first bytes are one of those audio formats'
//!   — `RIFF….WAVE`, `ID3` or an MP3 frame header, `fLaC`, `OggS`, `ftyp` at offset 4, an
//!   ADTS header, WebM's `1A 45 DF A3` — is audio, anything else subtitles). An audio file the
//!   STT worker cannot decode (ALAC in an M4A, say) fails its job with `invalid_audio`.
//!   202 with the job for a new job, 200 with the existing one for a duplicate submission
//!   (same file, same options); `Location: /v1/jobs/<id>`.
//! - `GET /v1/jobs` — every job still kept, newest first.
//! - `GET /v1/jobs/{id}` — one job: state, progress, message, error, results.
//! - `GET /v1/jobs/{id}/result?lang=vi` — a result file (`lang` may be left out when the job
//!   has one result; for an audio job the source language gives the transcript).
//! - `GET /v1/jobs/results.zip?ids=ID,ID,…` — every result file of the succeeded jobs among up to
//!   [`MAX_ZIP_JOBS`] jobs, in one ZIP archive (a folder's worth of translations in one
//!   download). Jobs not (yet) succeeded, or unknown, are left out and counted in the
//!   `X-Voxbridge-Skipped-Jobs` header; two results with one file name get ` (2)`, ` (3)`, … .
//!   404 when no job has a result; 413 past [`MAX_ZIP_BYTES`] of results; 503 with
//!   `Retry-After` while [`MAX_ZIP_BUILDS`] other archives are being built.
//!
//! When the edge has API keys (`--api-keys`), every job route needs one, as
//! `Authorization: Bearer <key>` or `?api_key=<key>` (401 `unauthorized` otherwise): jobs store
//! files and cost minutes of model time.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use voxbridge_shared::JobId;
use voxbridge_shared::jobs::{JobError, JobOptions, JobStore, JobView, Upload, short_code};
use voxbridge_shared::languages;
use voxbridge_shared::messages::{JobKind, JobState, JobStatus, SubtitleFormat};

use crate::error::ApiError;

/// State of the job routes.
#[derive(Debug, Clone)]
pub struct JobsState {
    pub store: JobStore,
    /// Accepted API keys; empty = open (development mode).
    pub api_keys: std::sync::Arc<std::collections::HashSet<String>>,
    pub max_bytes: usize,
    pub max_targets: usize,
    /// `results.zip` archives being built (each held in memory): at most [`MAX_ZIP_BUILDS`].
    pub zip_builds: std::sync::Arc<tokio::sync::Semaphore>,
}

/// The job routes.
pub fn router(state: JobsState) -> Router {
    // Room for the multipart envelope around the largest file.
    let body_limit = state.max_bytes.saturating_add(64 * 1024);
    Router::new()
        .route(
            "/v1/jobs",
            post(submit).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/v1/jobs", get(list))
        .route("/v1/jobs/results.zip", get(results_zip))
        .route("/v1/jobs/{id}", get(show))
        .route("/v1/jobs/{id}/result", get(result))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ))
        .with_state(state)
}

/// Rejects requests without a configured API key (when keys are configured).
async fn require_api_key(
    State(state): State<JobsState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.api_keys.is_empty() {
        return next.run(request).await;
    }
    let header_key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query_key = request.uri().query().and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v)
    });
    match header_key.or(query_key) {
        Some(key) if state.api_keys.contains(&key) => next.run(request).await,
        Some(_) => ApiError::Unauthorized("unknown API key".into()).into_response(),
        None => ApiError::Unauthorized(
            "this edge needs an API key: `Authorization: Bearer <key>` or `?api_key=`".into(),
        )
        .into_response(),
    }
}

fn job_error(e: JobError) -> ApiError {
    match e {
        JobError::NotFound(id) => ApiError::NotFound(format!("job {id} not found")),
        JobError::TooLarge { size, limit } => ApiError::FileTooLarge { size, limit },
        JobError::Invalid(m) => ApiError::InvalidRequest(m),
        other => ApiError::Unavailable(other.to_string()),
    }
}

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|e: voxbridge_shared::ids::InvalidId| ApiError::InvalidRequest(e.to_string()))
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::FileTooLarge {
            size: limit.saturating_add(1),
            limit,
        }
    } else {
        ApiError::InvalidRequest(format!("invalid multipart body: {}", e.body_text()))
    }
}

async fn submit(State(state): State<JobsState>, mut form: Multipart) -> Response {
    match submit_inner(&state, &mut form).await {
        Ok((view, created)) => {
            let status = if created {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            let mut response = (status, Json(&view)).into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", view.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn submit_inner(
    state: &JobsState,
    form: &mut Multipart,
) -> Result<(JobView, bool), ApiError> {
    let mut upload: Option<Upload> = None;
    let result = read_form(state, form, &mut upload).await;
    match result {
        Ok(options) => {
            let upload = upload
                .ok_or_else(|| ApiError::InvalidRequest("the form has no `file` field".into()))?;
            let submitted = state
                .store
                .submit_upload(options, upload)
                .await
                .map_err(job_error)?;
            Ok((
                JobView::from_status(&submitted.status, submitted.deduplicated),
                !submitted.deduplicated,
            ))
        }
        Err(e) => {
            if let Some(upload) = upload {
                state.store.discard(upload).await;
            }
            Err(e)
        }
    }
}

/// Reads the form: the file is streamed into the Object Store as it arrives (into `upload`),
/// the other fields become the job options.
async fn read_form(
    state: &JobsState,
    form: &mut Multipart,
    upload: &mut Option<Upload>,
) -> Result<JobOptions, ApiError> {
    let mut options = JobOptions::default();
    let mut targets: Vec<String> = Vec::new();
    let mut source: Option<String> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| multipart_error(e, state.max_bytes))?
    {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if upload.is_some() {
                return Err(ApiError::InvalidRequest("one `file` per job".into()));
            }
            let file_name = field.file_name().unwrap_or("upload").to_string();
            let reader = tokio_util::io::StreamReader::new(
                field.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.body_text()))),
            );
            let stored = state
                .store
                .upload(&file_name, reader, state.max_bytes)
                .await
                .map_err(job_error)?;
            options.file_name = file_name;
            *upload = Some(stored);
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|e| multipart_error(e, state.max_bytes))?;
        let text = text.trim();
        match name.as_str() {
            "to" | "target" | "targets" => targets.extend(
                text.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            ),
            "from" | "source" => {
                if !text.is_empty() && text != "auto" {
                    source = Some(text.to_string());
                }
            }
            "format" => {
                options.output_format = match text.to_ascii_lowercase().as_str() {
                    "" => None,
                    "srt" => Some(SubtitleFormat::Srt),
                    "vtt" | "webvtt" => Some(SubtitleFormat::Vtt),
                    other => {
                        return Err(ApiError::InvalidRequest(format!(
                            "format {other:?}: expected srt or vtt"
                        )));
                    }
                };
            }
            "kind" => {
                options.kind = match text {
                    "" => None,
                    "subtitles" => Some(JobKind::Subtitles),
                    "audio" => Some(JobKind::Audio),
                    other => {
                        return Err(ApiError::InvalidRequest(format!(
                            "kind {other:?}: expected subtitles or audio"
                        )));
                    }
                };
            }
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown form field {:?}: expected file, to, from, format, kind",
                    other.chars().take(32).collect::<String>()
                )));
            }
        }
    }
    if targets.len() > state.max_targets {
        return Err(ApiError::InvalidRequest(format!(
            "{} target languages; the limit is {}",
            targets.len(),
            state.max_targets
        )));
    }
    for t in &targets {
        let lang = languages::resolve(t).map_err(|e| ApiError::UnknownLanguage(e.to_string()))?;
        if !options.target_langs.iter().any(|x| x == lang.flores) {
            options.target_langs.push(lang.flores.to_string());
        }
    }
    if let Some(s) = source {
        options.source_lang = Some(
            languages::resolve(&s)
                .map_err(|e| ApiError::UnknownLanguage(e.to_string()))?
                .flores
                .to_string(),
        );
    }
    let is_audio = match options.kind {
        Some(kind) => kind == JobKind::Audio,
        None => upload.as_ref().is_some_and(Upload::is_audio),
    };
    if !is_audio && options.target_langs.is_empty() {
        return Err(ApiError::InvalidRequest(
            "`to` must name at least one target language".into(),
        ));
    }
    Ok(options)
}

async fn list(State(state): State<JobsState>) -> Response {
    match state.store.list().await {
        Ok(jobs) => Json(
            jobs.iter()
                .map(|s| JobView::from_status(s, false))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => job_error(e).into_response(),
    }
}

async fn status_of(state: &JobsState, id: &str) -> Result<JobStatus, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .status(&id)
        .await
        .map_err(job_error)?
        .ok_or_else(|| ApiError::NotFound(format!("job {id} not found (unknown, or expired)")))
}

async fn show(State(state): State<JobsState>, Path(id): Path<String>) -> Response {
    match status_of(&state, &id).await {
        Ok(status) => Json(JobView::from_status(&status, false)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ResultQuery {
    lang: Option<String>,
}

async fn result(
    State(state): State<JobsState>,
    Path(id): Path<String>,
    Query(query): Query<ResultQuery>,
) -> Response {
    match result_inner(&state, &id, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn result_inner(
    state: &JobsState,
    id: &str,
    query: ResultQuery,
) -> Result<Response, ApiError> {
    let status = status_of(state, id).await?;
    match status.state {
        JobState::Succeeded => {}
        JobState::Failed => {
            let why = status
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.code, e.message))
                .unwrap_or_default();
            return Err(ApiError::NotReady(format!("the job failed ({why})")));
        }
        other => {
            return Err(ApiError::NotReady(format!(
                "the job is {} ({:.0} %); try again later",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                status.progress * 100.0
            )));
        }
    }
    let chosen = match &query.lang {
        Some(code) => {
            let lang =
                languages::resolve(code).map_err(|e| ApiError::UnknownLanguage(e.to_string()))?;
            // A translation into the language first, else the transcript in it.
            status
                .results
                .iter()
                .filter(|r| r.lang == lang.flores)
                .min_by_key(|r| r.transcript)
        }
        None if status.results.len() == 1 => status.results.first(),
        None => {
            let langs: Vec<String> = status.results.iter().map(|r| short_code(&r.lang)).collect();
            return Err(ApiError::InvalidRequest(format!(
                "the job has several results; choose one with ?lang= ({})",
                langs.join(", ")
            )));
        }
    };
    let chosen = chosen.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no result in {:?}",
            query.lang.as_deref().unwrap_or_default()
        ))
    })?;
    let bytes = state
        .store
        .get_file(&chosen.object, usize::MAX)
        .await
        .map_err(job_error)?
        .ok_or_else(|| ApiError::NotFound("the result file has expired".into()))?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match chosen.format {
            SubtitleFormat::Srt => "application/x-subrip; charset=utf-8",
            SubtitleFormat::Vtt => "text/vtt; charset=utf-8",
        }),
    );
    // File names are made safe at submission (ASCII-safe characters or letters).
    let disposition = format!(
        "attachment; filename=\"{}\"",
        chosen
            .file_name
            .replace(|c: char| !c.is_ascii_graphic(), "_")
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// At most this many jobs in one `results.zip`.
pub const MAX_ZIP_JOBS: usize = 1000;
/// At most this many bytes of result files in one `results.zip` (it is built in memory).
pub const MAX_ZIP_BYTES: usize = 256 * 1024 * 1024;
/// At most this many `results.zip` archives built at once per edge (so at most this many times
/// [`MAX_ZIP_BYTES`] in memory); another request meanwhile gets 503 with `Retry-After`.
pub const MAX_ZIP_BUILDS: usize = 2;

#[derive(Debug, Deserialize)]
struct ZipQuery {
    #[serde(default)]
    ids: String,
}

async fn results_zip(State(state): State<JobsState>, Query(query): Query<ZipQuery>) -> Response {
    match results_zip_inner(&state, &query.ids).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn results_zip_inner(state: &JobsState, ids: &str) -> Result<Response, ApiError> {
    let mut wanted: Vec<JobId> = Vec::new();
    for id in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let id = parse_id(id)?;
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    if wanted.is_empty() {
        return Err(ApiError::InvalidRequest(
            "no job ids: ?ids=ID,ID,… (comma-separated)".into(),
        ));
    }
    if wanted.len() > MAX_ZIP_JOBS {
        return Err(ApiError::InvalidRequest(format!(
            "{} jobs in one archive; the limit is {MAX_ZIP_JOBS}",
            wanted.len()
        )));
    }
    let _building = state.zip_builds.clone().try_acquire_owned().map_err(|_| {
        ApiError::Unavailable(format!(
            "{MAX_ZIP_BUILDS} archives are being built; retry in a moment"
        ))
    })?;
    let mut files: Vec<(String, bytes::Bytes)> = Vec::new();
    let (mut skipped, mut total) = (0usize, 0usize);
    for id in &wanted {
        let status = match state.store.status(id).await.map_err(job_error)? {
            Some(status) if status.state == JobState::Succeeded => status,
            _ => {
                skipped += 1;
                continue;
            }
        };
        for result in &status.results {
            let Some(bytes) = state
                .store
                .get_file(&result.object, MAX_ZIP_BYTES)
                .await
                .map_err(job_error)?
            else {
                continue; // expired meanwhile
            };
            total += bytes.len();
            if total > MAX_ZIP_BYTES {
                return Err(ApiError::FileTooLarge {
                    size: total,
                    limit: MAX_ZIP_BYTES,
                });
            }
            files.push((result.file_name.clone(), bytes));
        }
    }
    if files.is_empty() {
        return Err(ApiError::NotFound(format!(
            "none of the {} jobs has results (yet)",
            wanted.len()
        )));
    }
    let archive = tokio::task::spawn_blocking(move || zip_files(&files))
        .await
        .map_err(|e| ApiError::Unavailable(format!("building the archive: {e}")))?
        .map_err(|e| ApiError::Unavailable(format!("building the archive: {e}")))?;
    let mut response = (StatusCode::OK, archive).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"voxbridge-results.zip\""),
    );
    headers.insert("x-voxbridge-skipped-jobs", HeaderValue::from(skipped));
    Ok(response)
}

/// A ZIP archive (deflate) of `(name, content)`; a name met again gets ` (2)`, ` (3)`, … before
/// its extension.
fn zip_files(files: &[(String, bytes::Bytes)]) -> zip::result::ZipResult<Vec<u8>> {
    use std::io::Write;
    let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut used = std::collections::HashSet::new();
    for (name, bytes) in files {
        let unique = unique_name(&mut used, name);
        archive.start_file(unique, options)?;
        archive.write_all(bytes)?;
    }
    Ok(archive.finish()?.into_inner())
}

fn unique_name(used: &mut std::collections::HashSet<String>, name: &str) -> String {
    let stem = voxbridge_shared::jobs::file_stem(name);
    let extension = &name[stem.len()..];
    let mut candidate = name.to_string();
    let mut n = 1;
    while !used.insert(candidate.clone()) {
        n += 1;
        candidate = format!("{stem} ({n}){extension}");
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_met_again_is_numbered_before_its_extension() {
        let mut used = std::collections::HashSet::new();
        let names: Vec<String> = [
            "film.vi.srt",
            "film.vi.srt",
            "film.vi.srt",
            "README",
            "README",
        ]
        .iter()
        .map(|n| unique_name(&mut used, n))
        .collect();
        assert_eq!(
            names,
            [
                "film.vi.srt",
                "film.vi (2).srt",
                "film.vi (3).srt",
                "README",
                "README (2)"
            ]
        );
    }
}
