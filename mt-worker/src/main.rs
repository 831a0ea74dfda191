//! `voxbridge-mt`: parses configuration and runs the MT worker until SIGTERM.

use clap::Parser;

/// With the `jemalloc` feature, jemalloc replaces glibc's allocator for the whole process.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = voxbridge_mt::Config::parse();
    voxbridge_shared::telemetry::init(&config.telemetry);
    let shutdown = voxbridge_shared::shutdown::on_signal();
    voxbridge_mt::run(config, shutdown).await
}
