//! The Redis translation cache.
//!
//! Key = `vb:mt:v1:` + sha256(model id, source, target, normalised text). Lookups happen before a
//! request joins a batch (one `MGET` per request, bounded by a short timeout); writes are
//! fire-and-forget (`SET … EX ttl` on a spawned task), so Redis never sits on the translation
//! path. When Redis is down the worker keeps translating: the cache is bypassed, each failure is
//! counted, the outage is logged once when it starts and once when it ends, and the connection
//! manager reconnects by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// How long a lookup may take before the cache is skipped for this request.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(50);
/// Default time a cached translation lives.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Cache counters (`voxbridge_mt_cache_…_total`).
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    pub hits: Counter,
    pub misses: Counter,
    pub errors: Counter,
}

impl CacheMetrics {
    /// Registers under `voxbridge_mt_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("voxbridge_mt");
        r.register(
            "cache_hits",
            "Texts answered from the Redis cache",
            m.hits.clone(),
        );
        r.register(
            "cache_misses",
            "Texts not found in the cache",
            m.misses.clone(),
        );
        r.register(
            "cache_errors",
            "Cache lookups or writes that failed (Redis down or slow); the cache was bypassed",
            m.errors.clone(),
        );
        m
    }
}

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    connection: RwLock<Option<ConnectionManager>>,
    ttl: Duration,
    model_id: String,
    metrics: CacheMetrics,
    /// True while Redis is failing (to log an outage once).
    down: AtomicBool,
    enabled: bool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.inner.enabled)
            .field("ttl", &self.inner.ttl)
            .finish()
    }
}

impl Cache {
    /// A cache on `url` (empty = disabled). Connecting happens in the background, so a Redis that
    /// is down at start-up delays nothing.
    pub fn new(
        url: &str,
        ttl: Duration,
        model_id: String,
        metrics: CacheMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let cache = Self {
            inner: Arc::new(Inner {
                connection: RwLock::new(None),
                ttl,
                model_id,
                metrics,
                down: AtomicBool::new(false),
                enabled: !url.is_empty(),
            }),
        };
        if cache.inner.enabled {
            match redis::Client::open(url) {
                Ok(client) => {
                    let this = cache.clone();
                    tokio::spawn(async move { this.connect_loop(client, shutdown).await });
                }
                Err(error) => {
                    tracing::error!(%error, "invalid Redis URL; translation cache disabled")
                }
            }
        } else {
            tracing::info!("no Redis URL: translation cache disabled");
        }
        cache
    }

    async fn connect_loop(&self, client: redis::Client, shutdown: CancellationToken) {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(Duration::from_millis(500))
            .set_number_of_retries(1)
            .set_max_delay(2000);
        let mut delay = Duration::from_millis(200);
        loop {
            match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                Ok(manager) => {
                    *self.inner.connection.write().await = Some(manager);
                    tracing::info!("connected to Redis: translation cache on");
                    return;
                }
                Err(error) => {
                    self.failed(&error);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        self.inner.metrics.errors.inc();
        if !self.inner.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(%error, "Redis unavailable: translating without the cache until it returns");
        }
    }

    fn succeeded(&self) {
        if self.inner.down.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis is back: translation cache on");
        }
    }

    /// The cache key of one text.
    pub fn key(&self, source: &str, target: &str, text: &str) -> String {
        let mut hash = Sha256::new();
        for part in [
            self.inner.model_id.as_str(),
            source,
            target,
            &normalise(text),
        ] {
            hash.update(part.as_bytes());
            hash.update([0u8]);
        }
        format!("vb:mt:v1:{}", hex::encode(hash.finalize()))
    }

    /// Looks up every text; `None` where missing or when the cache is unavailable. Empty or
    /// whitespace-only texts are answered `Some("")` without a lookup (and not counted).
    pub async fn get_many(
        &self,
        source: &str,
        target: &str,
        texts: &[String],
    ) -> Vec<Option<String>> {
        let empty: Vec<bool> = texts.iter().map(|t| t.trim().is_empty()).collect();
        let mut none: Vec<Option<String>> = empty.iter().map(|&e| e.then(String::new)).collect();
        if !self.inner.enabled || empty.iter().all(|&e| e) {
            return none;
        }
        let wanted: Vec<&String> = texts.iter().filter(|t| !t.trim().is_empty()).collect();
        let Some(mut connection) = self.inner.connection.read().await.clone() else {
            self.inner.metrics.errors.inc();
            return none;
        };
        let keys: Vec<String> = wanted.iter().map(|t| self.key(source, target, t)).collect();
        let mut command = redis::cmd("MGET");
        command.arg(&keys);
        let lookup = command.query_async::<Vec<Option<String>>>(&mut connection);
        match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(values)) if values.len() == wanted.len() => {
                self.succeeded();
                let mut values = values.into_iter();
                for (slot, is_empty) in none.iter_mut().zip(&empty) {
                    if *is_empty {
                        continue;
                    }
                    let value = values.next().flatten();
                    if value.is_some() {
                        self.inner.metrics.hits.inc();
                    } else {
                        self.inner.metrics.misses.inc();
                    }
                    *slot = value;
                }
                none
            }
            Ok(Ok(_)) => none,
            Ok(Err(error)) => {
                self.failed(&error);
                none
            }
            Err(_) => {
                self.failed(&"lookup timed out");
                none
            }
        }
    }

    /// Stores translations without waiting (fire-and-forget).
    pub fn put_many(&self, source: &str, target: &str, pairs: Vec<(String, String)>) {
        if !self.inner.enabled || pairs.is_empty() {
            return;
        }
        let this = self.clone();
        let items: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(text, _)| !text.trim().is_empty())
            .map(|(text, translation)| (self.key(source, target, &text), translation))
            .collect();
        tokio::spawn(async move {
            let Some(mut connection) = this.inner.connection.read().await.clone() else {
                return;
            };
            let mut pipe = redis::pipe();
            for (key, value) in &items {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(this.inner.ttl.as_secs().max(1))
                    .ignore();
            }
            match pipe.query_async::<()>(&mut connection).await {
                Ok(()) => this.succeeded(),
                Err(error) => this.failed(&error),
            }
        });
    }
}

/// Normalisation for cache keys: Unicode whitespace runs become one space, ends trimmed.
pub fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_ignores_whitespace_differences_only() {
        assert_eq!(normalise("  Hello \t world\n"), "Hello world");
        assert_ne!(normalise("Hello world"), normalise("hello world"));
    }

    #[tokio::test]
    async fn keys_depend_on_model_languages_and_text() {
        let token = CancellationToken::new();
        let a = Cache::new(
            "",
            DEFAULT_TTL,
            "m1".into(),
            CacheMetrics::default(),
            token.clone(),
        );
        let b = Cache::new("", DEFAULT_TTL, "m2".into(), CacheMetrics::default(), token);
        let k = a.key("eng_Latn", "vie_Latn", "Hello  world");
        assert_eq!(k, a.key("eng_Latn", "vie_Latn", " Hello world "));
        assert_ne!(k, b.key("eng_Latn", "vie_Latn", "Hello world"));
        assert_ne!(k, a.key("eng_Latn", "fra_Latn", "Hello world"));
        assert_ne!(k, a.key("eng_Latn", "vie_Latn", "Hello world!"));
        assert!(k.starts_with("vb:mt:v1:"));
    }
}
