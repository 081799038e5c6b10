//! TrueNumber's integration tests, against the real PostgreSQL (and, as they join, Redis and
//! RabbitMQ). Each test gets its own database and prefixes, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod abuse;
mod app_tokens;
mod app_view;
mod chaos;
mod cli;
mod company;
mod console;
mod console_browser;
mod db_lanes;
mod entities;
mod errors;
mod hardening;
mod helpers;
mod https;
mod number_binding;
mod observability;
mod openapi;
mod query_plans;
mod rate_limit;
mod retries;
mod shutdown;
mod standalone;
mod standalone_sqlite;
mod test_mode;
mod typed_client;
mod verification;
mod verifications;
mod webhooks;
mod worker;
