//! What operators see: Prometheus metrics ([`metrics`]), structured logs ([`telemetry`]) and
//! the health-check probe of the `health-check` subcommands ([`probe`]).

pub mod health;
pub mod metrics;
pub mod probe;
pub mod telemetry;
