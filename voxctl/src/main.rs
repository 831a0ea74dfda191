//! `voxctl`: parses the command line and runs one command.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = voxctl::Cli::parse();
    voxbridge_shared::telemetry::init(&cli.telemetry);
    let code = voxctl::run(cli).await?;
    std::process::exit(code);
}
