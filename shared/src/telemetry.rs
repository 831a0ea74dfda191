//! Logging set-up: `tracing` with an `EnvFilter`, as text or JSON lines on stderr.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// keeps tests that start several services in one process simple.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|error| {
        eprintln!(
            "invalid log filter {:?} ({error}); using \"info\"",
            config.filter
        );
        EnvFilter::new("info")
    });
    // symphonia (audio decoding) logs about the file it reads — demuxing choices at info, a
    // user's broken upload at error — which the job's own error already reports with a code;
    // keep those out unless the filter asks for them by name.
    let filter = if config.filter.contains("symphonia") {
        filter
    } else {
        filter.add_directive("symphonia=off".parse().expect("a valid directive"))
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already initialised (a second service in the same test process): keep the first.
    let _ = result;
}

/// Logging for tests: respects `VOXBRIDGE_LOG`, defaults to warnings only.
pub fn init_for_tests() {
    init(&TelemetryConfig {
        filter: std::env::var("VOXBRIDGE_LOG").unwrap_or_else(|_| "warn".into()),
        format: LogFormat::Text,
    });
}
