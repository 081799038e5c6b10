//! TrueNumber's schema migrations.
//!
//! Each migration is frozen once released: it is plain SQL and never imports the live entities,
//! so a later change to an entity cannot rewrite history. Apply them through
//! `truenumber_core::db::migrate`, which holds a PostgreSQL advisory lock so that several nodes
//! may start at once.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_events_and_webhooks;
mod m20261123_000003_unambiguous_point_lookups;
mod m20261123_000004_api_key_secret_check;

/// The ordered list of migrations.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_events_and_webhooks::Migration),
            Box::new(m20261123_000003_unambiguous_point_lookups::Migration),
            Box::new(m20261123_000004_api_key_secret_check::Migration),
        ]
    }
}
