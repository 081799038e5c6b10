//! A short check value of each API key's secret, beside its argon2id hash, so that a known key
//! id with a wrong secret is refused without hashing (core/src/companies/api_keys.rs explains the choice).
//! Keys made before this migration have none; theirs is written at their next successful use.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE api_keys ADD COLUMN secret_check TEXT";
const DOWN: &str = "ALTER TABLE api_keys DROP COLUMN secret_check";

/// [`UP`] for SQLite: the same statement.
const UP_SQLITE: &str = UP;
/// [`DOWN`] for SQLite: the same statement (SQLite drops columns since 3.35).
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
