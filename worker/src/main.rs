//! `truenumber-worker`: see `truenumber_worker::run`.
//!
//! `truenumber-worker` (or `run`) runs the daemon; `truenumber-worker health-check` probes a
//! running one's `/health/live` on `WORKER_PORT` (for container HEALTHCHECKs).

use std::{process::ExitCode, time::Duration};

/// The same allocator as the API, also without transparent huge pages (see docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use truenumber_core::{config::Config, observability::telemetry};

fn main() -> ExitCode {
    telemetry::run_named("tn-worker", run()).unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

async fn run() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_else(|| "run".to_owned());
    let config = match command.as_str() {
        // A worker never signs or verifies app tokens: JWT_SECRET is not required.
        "run" | "health-check" => Config::worker_from_env(),
        other => {
            eprintln!("unknown command `{other}`; use `run` (default) or `health-check`");
            return ExitCode::from(2);
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if command == "health-check" {
        let url = format!("http://127.0.0.1:{}/health/live", config.worker_port);
        return match truenumber_core::observability::probe::probe(&url, Duration::from_secs(3))
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    telemetry::install_crypto_provider();
    telemetry::init(&config, true);
    match truenumber_worker::run(config, shutdown_signal(), |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        // Once, on stderr (a log line as well would say it twice).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}
