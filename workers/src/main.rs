//! `taxistream-worker`: one binary, one subcommand per pipeline stage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use taxistream_worker::stage;

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
enum Command {
    /// Read, validate and window trips in one process (files, URLs, months, Open Data).
    Run(Box<stage::run_local::RunArgs>),
    /// Generate the seeded synthetic month (once) and time the reference query on it.
    Bench(taxistream_worker::bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => stage::run_local::main(*args).await,
        Command::Bench(args) => {
            tokio::task::block_in_place(|| taxistream_worker::bench::main(args))
        }
    }
}
