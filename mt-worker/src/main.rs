//! `voxbridge-mt`: parses configuration and runs the MT worker until SIGTERM.

use clap::Parser;

/// With the `jemalloc` feature (default), jemalloc replaces glibc's allocator for the whole
/// process: the decoder's per-step buffers fragment glibc's heap under load.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = voxbridge_mt::Config::parse();
    voxbridge_shared::telemetry::init(&config.telemetry);
    if cfg!(feature = "jemalloc") && config.mmap_threshold_kb > 0 {
        tracing::warn!(
            "--mmap-threshold-kb tunes glibc's malloc, which this build does not use (jemalloc); \
             build with --no-default-features to use it"
        );
    }
    let shutdown = voxbridge_shared::shutdown::on_signal();
    voxbridge_mt::run(config, shutdown).await
}
