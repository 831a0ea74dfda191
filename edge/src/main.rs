//! `voxbridge-edge`: parses configuration and serves until SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = voxbridge_edge::Config::parse();
    voxbridge_shared::telemetry::init(&config.telemetry);
    let shutdown = voxbridge_shared::shutdown::on_signal();
    voxbridge_edge::run(config, shutdown).await
}
