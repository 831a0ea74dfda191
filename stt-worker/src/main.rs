//! `voxbridge-stt`: parses configuration and runs the STT worker until SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = voxbridge_stt::Config::parse();
    voxbridge_shared::telemetry::init(&config.telemetry);
    let shutdown = voxbridge_shared::shutdown::on_signal();
    voxbridge_stt::run(config, shutdown).await
}
