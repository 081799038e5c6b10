//! A rotated-out webhook secret keeps signing for a while (PRODUCT.md, "Company self-service":
//! secret rotation): `previous_webhook_secret` and the instant it stops,
//! `previous_webhook_secret_expires_at`. During the overlap every delivery carries two
//! signatures, so a receiver can switch secrets without losing an event.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE companies
    ADD COLUMN previous_webhook_secret VARCHAR(255),
    ADD COLUMN previous_webhook_secret_expires_at TIMESTAMPTZ;
"#;
const DOWN: &str = r#"
ALTER TABLE companies
    DROP COLUMN previous_webhook_secret_expires_at,
    DROP COLUMN previous_webhook_secret;
"#;

/// [`UP`] for SQLite: one column per statement, time as RFC 3339 text.
const UP_SQLITE: &str = r#"
ALTER TABLE companies ADD COLUMN previous_webhook_secret VARCHAR(255);
ALTER TABLE companies ADD COLUMN previous_webhook_secret_expires_at TEXT;
"#;
/// [`DOWN`] for SQLite: one column per statement.
const DOWN_SQLITE: &str = r#"
ALTER TABLE companies DROP COLUMN previous_webhook_secret_expires_at;
ALTER TABLE companies DROP COLUMN previous_webhook_secret;
"#;

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
