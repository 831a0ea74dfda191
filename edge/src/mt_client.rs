//! Sends translation requests to the MT work queue and waits for their results.
//!
//! One subscription on `_INBOX.<edge instance>.mt.*` receives every result for this edge; each
//! request registers a one-shot slot under its request id, so a duplicate result (a redelivered
//! request answered twice) finds no slot and is dropped. Before publishing, the queue depth is
//! checked (read from the MT stream at most every [`DEPTH_REFRESH`]); over the limit the caller
//! gets `Overloaded` (503) instead of waiting in a queue that cannot drain in time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use voxbridge_shared::RequestId;
use voxbridge_shared::codec;
use voxbridge_shared::messages::{MtRequest, MtResult, now_unix_ms};
use voxbridge_shared::service::ServiceContext;
use voxbridge_shared::subjects::streams;

use crate::error::ApiError;

/// How stale the cached queue depth may be.
pub const DEPTH_REFRESH: Duration = Duration::from_millis(250);

type Slots = Arc<Mutex<HashMap<RequestId, oneshot::Sender<MtResult>>>>;

/// The edge's handle on the MT queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct MtClient {
    ctx: ServiceContext,
    inbox_prefix: String,
    slots: Slots,
    depth: Arc<Mutex<(Option<Instant>, u64)>>,
    max_queue: u64,
}

impl MtClient {
    /// Subscribes to this edge's result inbox.
    pub async fn start(
        ctx: ServiceContext,
        max_queue: u64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let inbox_prefix = format!("_INBOX.{}.mt", ctx.instance);
        let mut subscription = ctx.client.subscribe(format!("{inbox_prefix}.*")).await?;
        let slots: Slots = Arc::default();
        let dispatch = slots.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = subscription.next() => match m { Some(m) => m, None => break },
                };
                match codec::decode::<MtResult>(&message.payload) {
                    Ok(result) => {
                        let slot = dispatch
                            .lock()
                            .ok()
                            .and_then(|mut s| s.remove(&result.request_id));
                        match slot {
                            Some(slot) => {
                                let _ = slot.send(result);
                            }
                            None => {
                                tracing::debug!(request_id = %result.request_id, "result for a request nobody waits for (duplicate or timed out)")
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "undecodable MT result"),
                }
            }
        });
        Ok(Self {
            ctx,
            inbox_prefix,
            slots,
            depth: Arc::new(Mutex::new((None, 0))),
            max_queue,
        })
    }

    /// Requests waiting in the MT queue (cached for [`DEPTH_REFRESH`]).
    pub async fn queue_depth(&self) -> Result<u64, ApiError> {
        if let Ok(d) = self.depth.lock()
            && let (Some(at), depth) = *d
            && at.elapsed() < DEPTH_REFRESH
        {
            return Ok(depth);
        }
        let mut stream = self
            .ctx
            .js
            .get_stream(self.ctx.namespace.stream(streams::MT))
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let depth = stream
            .info()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .state
            .messages;
        if let Ok(mut d) = self.depth.lock() {
            *d = (Some(Instant::now()), depth);
        }
        Ok(depth)
    }

    /// Translates `texts` (FLORES codes) as one batch and waits up to `timeout`.
    pub async fn translate(
        &self,
        texts: Vec<String>,
        source: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<MtResult, ApiError> {
        let depth = self.queue_depth().await?;
        if depth >= self.max_queue {
            return Err(ApiError::Overloaded { depth });
        }
        let request_id = RequestId::new();
        let now = now_unix_ms();
        let request = MtRequest {
            v: 1,
            request_id,
            texts,
            source_lang: source.to_string(),
            target_lang: target.to_string(),
            reply_subject: format!("{}.{request_id}", self.inbox_prefix),
            session_id: None,
            segment_id: None,
            deadline_ms: Some(now + timeout.as_millis() as u64),
            enqueued_at_ms: now,
        };
        let payload = codec::encode(&request).map_err(|e| ApiError::Upstream(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(request_id, tx);
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            request_id.to_string().as_str(),
        );
        let published = async {
            self.ctx
                .js
                .publish_with_headers(
                    self.ctx.namespace.mt_request(target),
                    headers,
                    payload.into(),
                )
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))
        }
        .await;
        if let Err(error) = published {
            self.forget(&request_id);
            return Err(error);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => match result.error {
                Some(error) => Err(ApiError::from_mt(&error.code, &error.message)),
                None => Ok(result),
            },
            Ok(Err(_)) => Err(ApiError::Unavailable("result channel closed".into())),
            Err(_) => {
                self.forget(&request_id);
                Err(ApiError::Timeout(timeout.as_secs()))
            }
        }
    }

    fn forget(&self, request_id: &RequestId) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(request_id);
        }
    }
}
