//! A lease on unpublished events, so that the outbox relay claims a batch for a while instead
//! of several relays publishing the same event at once: `relay_claimed_until` is set when a
//! relay takes an event and read as free again once it has passed (or is `NULL`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE verification_events ADD COLUMN relay_claimed_until TIMESTAMPTZ";
const DOWN: &str = "ALTER TABLE verification_events DROP COLUMN relay_claimed_until";

/// [`UP`] for SQLite: time is RFC 3339 UTC text.
const UP_SQLITE: &str = "ALTER TABLE verification_events ADD COLUMN relay_claimed_until TEXT";
/// [`DOWN`] for SQLite: the same statement.
const DOWN_SQLITE: &str = DOWN;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on both engines (PostgreSQL's default; SQLite's DDL is transactional
    /// too, so a failed step leaves nothing half-done).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_for_backend(manager, UP, UP_SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_for_backend(manager, DOWN, DOWN_SQLITE).await
    }
}
