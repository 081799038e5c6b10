//! `truenumber-api`: see `truenumber_api::cli`.

use std::process::ExitCode;

/// mimalloc: glibc's malloc was ~17% of the API's CPU under load and fragmented its memory.
/// Built with `no_thp` (the workspace's feature): mimalloc no longer asks the kernel for
/// transparent huge pages, each of which made a sparsely used 2 MiB region resident (idle
/// RSS 72 → 43 MiB, peak under load 146–159 → 119–121 MiB; see docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use truenumber_api::cli::{self, Cli, Command};
use truenumber_core::observability::telemetry;

fn main() -> ExitCode {
    telemetry::run_named("truenumber-api", run()).unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> ExitCode {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    let config = match cli::config_for(&command, |name| std::env::var(name).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::install_crypto_provider();
    telemetry::init(&config, command.logs_to_stdout());
    let mut stdout = std::io::stdout();
    match cli::execute(command, config, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        // Once, on stderr (logs of operator commands go there too, so no log line as well).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
