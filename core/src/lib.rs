//! Shared by the TrueNumber API and worker, one folder per domain, so that any behaviour is
//! found by its name (docs/ARCHITECTURE.md):
//!
//! - [`verification`]: sessions: initiate, the transitions (submit, deny, test completion,
//!   expiry), the company's listing and the app's view.
//! - [`abuse`]: the controls against asking one person again and again: per-number limits,
//!   deny cooldowns, blocks by a number's holder, the countries a company serves.
//! - [`companies`]: companies and who may call: API keys, app tokens, the secrets they are
//!   made of.
//! - [`webhooks`]: the outbox events, their bodies, deliveries, attempts and retries, the
//!   HTTP attempt itself, where a webhook may go and how it is signed.
//! - [`background`]: the loops the worker daemon and standalone mode both run (relay, sweeps,
//!   standalone's consumer and dispatcher).
//! - [`queue`]: the event queue (RabbitMQ, or in-process over the database).
//! - [`limits`]: rate limits (Redis, or in-process).
//! - [`storage`]: the database, the API's request lanes, SQL shared by both engines.
//! - [`observability`]: metrics, logs, the health-check probe.
//!
//! The worker never depends on the API crate.

pub mod abuse;
pub mod background;
pub mod companies;
pub mod config;
pub mod error_code;
pub mod limits;
pub mod observability;
pub mod phone;
pub mod queue;
pub mod storage;
pub mod text;
pub mod verification;
pub mod webhooks;
