//! Process set-up shared by the binaries: the async runtime, the TLS crypto provider, and
//! logging (JSON lines by default, `LOG_FORMAT=pretty` for people, level from `LOG_LEVEL`).

use tracing_subscriber::{EnvFilter, fmt, fmt::writer::BoxMakeWriter, prelude::*};

use crate::config::{Config, LogFormat};

/// Runs `fut` to completion on a multi-threaded runtime whose threads are named `name`, so
/// `top -H` and profiles tell this process's workers from other tokio processes on the machine.
pub fn run_named<F: std::future::Future>(name: &str, fut: F) -> std::io::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()?
        .block_on(fut))
}

/// Installs the global subscriber once (later calls are ignored). Logs go to stdout for
/// daemons, to stderr for commands whose stdout is their output.
pub fn init(config: &Config, to_stdout: bool) {
    init_with_writer(
        config,
        BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
            if to_stdout {
                Box::new(std::io::stdout())
            } else {
                Box::new(std::io::stderr())
            }
        }),
    );
}

/// Installs the global subscriber writing to `writer` (tests capture logs this way).
pub fn init_with_writer(config: &Config, writer: BoxMakeWriter) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    // The request span's `request_id` ties every line logged inside a
                    // request to it (`"span":{"request_id":…}`).
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(writer)).try_init(),
    };
}

/// Installs aws-lc-rs as rustls' process-wide crypto provider (one provider, chosen once).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_name_their_threads() {
        let name = run_named("tn-test", async {
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap()
        })
        .unwrap();
        assert_eq!(name.as_deref(), Some("tn-test"));
    }

    #[test]
    fn init_is_idempotent_in_either_format() {
        let mut map = std::collections::HashMap::new();
        map.insert("JWT_SECRET".to_owned(), "x".repeat(32));
        map.insert("LOG_FORMAT".to_owned(), "pretty".to_owned());
        map.insert("LOG_LEVEL".to_owned(), "not a [valid filter".to_owned());
        let pretty = Config::from_map(&map).unwrap();
        init(&pretty, false);
        map.insert("LOG_FORMAT".to_owned(), "json".to_owned());
        let json = Config::from_map(&map).unwrap();
        init(&json, true);
        install_crypto_provider();
        install_crypto_provider();
        tracing::info!("still logging after repeated init");
    }
}
