//! `taxistream-worker`: one binary, one subcommand per pipeline stage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "taxistream-worker",
    version,
    about = "taxistream data plane worker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Stages. Each variant's arguments live beside the stage in `stage/`.
#[derive(Debug, Subcommand)]
enum Command {}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {}
}
