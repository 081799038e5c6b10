//! Shared by the TrueNumber API and worker: configuration, error codes, the database,
//! repositories and domain rules. The worker never depends on the API crate.

pub mod app_token;
pub mod app_view;
pub mod auth;
pub mod companies;
pub mod config;
pub mod db;
pub mod db_lanes;
pub mod deliveries;
pub mod error_code;
pub mod events;
pub mod metrics;
pub mod phone;
pub mod probe;
pub mod queue;
pub mod rate_limit;
pub mod secrets;
pub mod sessions;
pub mod sql;
pub mod sweeps;
pub mod telemetry;
pub mod text;
pub mod verification;
pub mod write_watch;
