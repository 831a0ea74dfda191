//! Connecting to NATS: retry with exponential backoff at start-up (the server may come up after
//! us under compose), reconnect forever afterwards, connection events logged and counted.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::metrics::{EventLabel, ServiceMetrics};

/// First retry delay; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "could not connect to NATS at {url} within {waited_s} s: {last_error} (is nats-server running? `scripts/setup` starts one)"
    )]
    Timeout {
        url: String,
        waited_s: u64,
        last_error: String,
    },
    #[error("cancelled while connecting to NATS")]
    Cancelled,
    #[error("could not read NATS credentials file: {0}")]
    Credentials(#[source] std::io::Error),
}

/// Connects with retry and backoff until `config.connect_deadline()` or `shutdown`.
pub async fn connect(
    config: &NatsConfig,
    client_name: &str,
    metrics: Option<ServiceMetrics>,
    shutdown: &CancellationToken,
) -> Result<Client, ConnectError> {
    let started = tokio::time::Instant::now();
    let mut delay = INITIAL_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let options = options(config, client_name, metrics.clone()).await?;
        match options.connect(server_urls(&config.url)).await {
            Ok(client) => {
                if let Some(m) = &metrics {
                    m.nats_connected.set(1);
                }
                tracing::info!(url = %config.url, attempt, "connected to NATS");
                return Ok(client);
            }
            Err(error) => {
                let waited = started.elapsed();
                if let Some(deadline) = config.connect_deadline()
                    && waited >= deadline
                {
                    return Err(ConnectError::Timeout {
                        url: config.url.clone(),
                        waited_s: waited.as_secs(),
                        last_error: error.to_string(),
                    });
                }
                tracing::warn!(url = %config.url, attempt, %error, retry_in_ms = delay.as_millis() as u64, "NATS not reachable yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(ConnectError::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn options(
    config: &NatsConfig,
    client_name: &str,
    metrics: Option<ServiceMetrics>,
) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let metrics = metrics.clone();
            async move { on_event(event, metrics.as_ref()) }
        });
    if let Some(creds) = &config.creds_file {
        options = options
            .credentials_file(creds)
            .await
            .map_err(ConnectError::Credentials)?;
    }
    if let Some(user) = &config.user {
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        options = options.user_and_password(user.clone(), password);
    }
    Ok(options)
}

fn on_event(event: Event, metrics: Option<&ServiceMetrics>) {
    let name = match &event {
        Event::Connected => "connected",
        Event::Disconnected => "disconnected",
        Event::LameDuckMode => "lame_duck",
        Event::Draining => "draining",
        Event::Closed => "closed",
        Event::SlowConsumer(_) => "slow_consumer",
        Event::ServerError(_) => "server_error",
        Event::ClientError(_) => "client_error",
    };
    match &event {
        Event::Connected => tracing::info!("NATS connection (re-)established"),
        Event::Disconnected | Event::Closed => tracing::warn!(event = name, "NATS connection lost"),
        other => tracing::warn!(event = %other, "NATS event"),
    }
    if let Some(m) = metrics {
        m.nats_events
            .get_or_create(&EventLabel { event: name })
            .inc();
        match event {
            Event::Connected => m.nats_connected.set(1),
            Event::Disconnected | Event::Closed => m.nats_connected.set(0),
            _ => 0,
        };
    }
}

/// Publishes to a JetStream subject with `Nats-Msg-Id` set, so a retried publish is
/// de-duplicated by the server; returns the acknowledgement to await.
pub async fn publish_with_id(
    js: &async_nats::jetstream::Context,
    subject: String,
    msg_id: &str,
    payload: bytes::Bytes,
) -> Result<
    async_nats::jetstream::context::PublishAckFuture,
    async_nats::jetstream::context::PublishError,
> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    js.publish_with_headers(subject, headers, payload).await
}

/// The servers of a `--nats-url` value: one URL, or several separated by commas (a cluster).
pub fn server_urls(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod url_tests {
    use super::server_urls;

    #[test]
    fn comma_separated_urls_are_a_server_list() {
        assert_eq!(server_urls("nats://a:4222"), ["nats://a:4222"]);
        assert_eq!(
            server_urls("nats://a:1, nats://b:2,,nats://c:3"),
            ["nats://a:1", "nats://b:2", "nats://c:3"]
        );
    }
}
