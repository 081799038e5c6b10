//! TrueNumber's schema migrations.
//!
//! Each migration is frozen once released: it is plain SQL and never imports the live entities,
//! so a later change to an entity cannot rewrite history. Apply them through
//! `truenumber_core::db::migrate`, which holds a PostgreSQL advisory lock so that several nodes
//! may start at once (or `truenumber_core::db::migrate_sqlite` in standalone mode).
//!
//! Each migration holds its PostgreSQL DDL (`UP`/`DOWN`) and, beside it, its SQLite twin
//! (`UP_SQLITE`/`DOWN_SQLITE`), chosen by the connection's backend. The SQLite schema has the
//! same tables, columns, uniques, foreign keys, CHECKs and partial indexes, with the
//! conventions of `core/src/storage/sql.rs`: time as RFC 3339 UTC text, UUIDs as 16-byte blobs,
//! booleans 0/1, JSON as text.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_events_and_webhooks;
mod m20261123_000003_unambiguous_point_lookups;
mod m20261123_000004_api_key_secret_check;
mod m20261123_000005_relay_lease;
mod m20261206_000006_api_key_modes_and_scopes;
mod m20261206_000007_webhook_secret_overlap;
mod m20261206_000008_retention_and_listings;
mod m20261206_000009_webhook_test_events;
mod m20261206_000010_test_mode_and_deny;
mod m20261207_000011_number_binding;
mod m20261208_000012_event_body_rendered_at_delivery;
mod m20261209_000013_abuse_controls;
mod m20261210_000014_console;

/// The SQLite column default that writes the current time as RFC 3339 UTC text, as written
/// literally in the SQLite twins above (frozen with them). A copy of
/// `truenumber_core::storage::sql::SQLITE_NOW_DEFAULT` (core/src/storage/sql.rs), which the migration crate
/// cannot depend on; core's SQLite tests check that the two stay equal.
pub const SQLITE_NOW_DEFAULT: &str = "(strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))";

/// Runs the DDL of the connection's engine: PostgreSQL's, or its SQLite twin.
pub(crate) async fn execute_for_backend(
    manager: &SchemaManager<'_>,
    postgres: &str,
    sqlite: &str,
) -> Result<(), DbErr> {
    let sql = match manager.get_database_backend() {
        sea_orm::DbBackend::Sqlite => sqlite,
        _ => postgres,
    };
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}

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
            Box::new(m20261123_000005_relay_lease::Migration),
            Box::new(m20261206_000006_api_key_modes_and_scopes::Migration),
            Box::new(m20261206_000007_webhook_secret_overlap::Migration),
            Box::new(m20261206_000008_retention_and_listings::Migration),
            Box::new(m20261206_000009_webhook_test_events::Migration),
            Box::new(m20261206_000010_test_mode_and_deny::Migration),
            Box::new(m20261207_000011_number_binding::Migration),
            Box::new(m20261208_000012_event_body_rendered_at_delivery::Migration),
            Box::new(m20261209_000013_abuse_controls::Migration),
            Box::new(m20261210_000014_console::Migration),
        ]
    }
}
