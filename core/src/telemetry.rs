//! Logging: JSON lines by default, `LOG_FORMAT=pretty` for people, level from `LOG_LEVEL`.

use tracing_subscriber::{EnvFilter, fmt, fmt::writer::BoxMakeWriter, prelude::*};

use crate::config::{Config, LogFormat};

/// Installs the global subscriber once (later calls are ignored). Logs go to stdout for
/// daemons, to stderr for commands whose stdout is their output.
pub fn init(config: &Config, to_stdout: bool) {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
        if to_stdout {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        }
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match config.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
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
