//! Dead-lettering: a message that can never be processed (it does not decode, or it is poison
//! input, or it exhausted `MaxDeliver`) is copied with its reason into the DLQ stream on
//! `vb.dlq.<stream>` and then terminated, so it never loops and nothing is silently lost.

use async_nats::jetstream::{self, AckKind, message::Message};
use bytes::Bytes;

use crate::codec;
use crate::messages::{DlqRecord, now_unix_ms};
use crate::metrics::{ReasonLabel, ServiceMetrics, StreamLabel};
use crate::subjects::Namespace;

/// Why dead-lettering itself failed (the message is then left un-acked, to be redelivered).
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("could not encode DLQ record: {0}")]
    Encode(#[from] codec::CodecError),
    #[error("could not publish DLQ record: {0}")]
    Publish(String),
    #[error("could not terminate the original message: {0}")]
    Term(String),
}

/// Writes dead letters for one component.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    namespace: Namespace,
    component: &'static str,
    metrics: ServiceMetrics,
}

impl DeadLetters {
    pub fn new(
        js: jetstream::Context,
        namespace: Namespace,
        component: &'static str,
        metrics: ServiceMetrics,
    ) -> Self {
        Self {
            js,
            namespace,
            component,
            metrics,
        }
    }

    /// Records a payload that failed to decode (counted as malformed), dead-letters it and
    /// terminates it. `stream_base` is the base stream name (e.g. `MT`).
    pub async fn malformed(
        &self,
        message: &Message,
        stream_base: &'static str,
        error: &codec::CodecError,
    ) -> Result<(), DlqError> {
        self.metrics
            .malformed_messages
            .get_or_create(&StreamLabel {
                stream: stream_base,
            })
            .inc();
        tracing::warn!(
            subject = %message.subject,
            stream = stream_base,
            %error,
            "malformed payload, dead-lettering it"
        );
        self.dead_letter(message, stream_base, error.code(), &error.to_string())
            .await
    }

    /// Dead-letters `message` with a reason and terminates it.
    pub async fn dead_letter(
        &self,
        message: &Message,
        stream_base: &'static str,
        reason_code: &'static str,
        reason: &str,
    ) -> Result<(), DlqError> {
        let info = message.info().ok();
        let record = DlqRecord {
            v: 1,
            original_subject: message.subject.to_string(),
            stream: info.as_ref().map(|i| i.stream.to_string()),
            stream_sequence: info.as_ref().map(|i| i.stream_sequence),
            consumer: info.as_ref().map(|i| i.consumer.to_string()),
            reason_code: reason_code.to_string(),
            reason: reason.chars().take(1024).collect(),
            delivery_count: info.as_ref().map(|i| i.delivered as u64).unwrap_or(1),
            payload: message.payload.clone(),
            component: self.component.to_string(),
            dead_lettered_at_ms: now_unix_ms(),
        };
        let msg_id = match (&record.stream, record.stream_sequence) {
            (Some(stream), Some(seq)) => format!("dlq-{stream}-{seq}"),
            _ => format!("dlq-{}", ulid::Ulid::new()),
        };
        self.publish(stream_base, &record, &msg_id).await?;
        message
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| DlqError::Term(e.to_string()))?;
        self.metrics
            .dead_letters
            .get_or_create(&ReasonLabel {
                reason: reason_code,
            })
            .inc();
        Ok(())
    }

    /// Publishes a record and waits for the stream's ack. The message id makes a retried
    /// dead-lettering (two workers, a redelivery) store one record.
    pub async fn publish(
        &self,
        stream_base: &str,
        record: &DlqRecord,
        msg_id: &str,
    ) -> Result<(), DlqError> {
        let payload = Bytes::from(codec::encode(record)?);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        self.js
            .publish_with_headers(self.namespace.dlq(stream_base), headers, payload)
            .await
            .map_err(|e| DlqError::Publish(e.to_string()))?
            .await
            .map_err(|e| DlqError::Publish(e.to_string()))?;
        Ok(())
    }
}

/// The advisory the server publishes when a consumer reaches `MaxDeliver` for a message.
#[derive(Debug, serde::Deserialize)]
struct MaxDeliveriesAdvisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

impl DeadLetters {
    /// Watches the server's `MAX_DELIVERIES` advisories for one durable consumer and moves each
    /// message that exhausted its deliveries into the DLQ (reason `max_deliveries`), deleting it
    /// from its work-queue stream. Every worker instance runs a watcher; the DLQ message id
    /// (`dlq-<stream>-<seq>`) makes the duplicates one record.
    pub fn spawn_max_deliveries_watch(
        &self,
        client: async_nats::Client,
        stream_base: &'static str,
        consumer: &'static str,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let subject = this
                .namespace
                .max_deliveries_advisory(stream_base, consumer);
            let mut sub = match client.subscribe(subject.clone()).await {
                Ok(sub) => sub,
                Err(error) => {
                    tracing::error!(%error, subject, "cannot watch max-deliveries advisories");
                    return;
                }
            };
            loop {
                let msg = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    msg = sub.next() => match msg { Some(m) => m, None => break },
                };
                let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(&msg.payload) {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "unreadable max-deliveries advisory");
                        continue;
                    }
                };
                if let Err(error) = this.move_exhausted(stream_base, &advisory).await {
                    tracing::warn!(%error, stream = advisory.stream, seq = advisory.stream_seq, "could not dead-letter an exhausted message");
                }
            }
        })
    }

    async fn move_exhausted(
        &self,
        stream_base: &'static str,
        advisory: &MaxDeliveriesAdvisory,
    ) -> Result<(), DlqError> {
        let stream = self
            .js
            .get_stream(&advisory.stream)
            .await
            .map_err(|e| DlqError::Publish(e.to_string()))?;
        let original = match stream.get_raw_message(advisory.stream_seq).await {
            Ok(m) => m,
            // Another instance already moved and deleted it.
            Err(_) => return Ok(()),
        };
        let record = DlqRecord {
            v: 1,
            original_subject: original.subject.to_string(),
            stream: Some(advisory.stream.clone()),
            stream_sequence: Some(advisory.stream_seq),
            consumer: Some(advisory.consumer.clone()),
            reason_code: "max_deliveries".into(),
            reason: format!(
                "not acknowledged after {} deliveries (worker crashes or repeated transient failures)",
                advisory.deliveries
            ),
            delivery_count: advisory.deliveries,
            payload: original.payload.clone(),
            component: self.component.to_string(),
            dead_lettered_at_ms: now_unix_ms(),
        };
        let msg_id = format!("dlq-{}-{}", advisory.stream, advisory.stream_seq);
        self.publish(stream_base, &record, &msg_id).await?;
        let _ = stream.delete_message(advisory.stream_seq).await;
        self.metrics
            .dead_letters
            .get_or_create(&ReasonLabel {
                reason: "max_deliveries",
            })
            .inc();
        Ok(())
    }
}
