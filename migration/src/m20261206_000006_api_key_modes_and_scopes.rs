//! API keys get a mode, scopes, a label and an expiry (PRODUCT.md, "Key modes and scopes").
//!
//! - `mode`: `live` or `test` (test keys arrive with test mode; every key so far is live).
//! - `scope_verifications`, `scope_management`: what the key may call. Two booleans rather than
//!   a list in one column: each is a typed flag, checked by the database, and a key that may do
//!   nothing is refused by a CHECK. Every existing key keeps both scopes.
//! - `label`: the company's own name for the key.
//! - `expires_at`: after this instant the key is refused (set by a roll; `NULL`: no expiry).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE api_keys
    ADD COLUMN mode VARCHAR(8) NOT NULL DEFAULT 'live' CHECK (mode IN ('live', 'test')),
    ADD COLUMN scope_verifications BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN scope_management BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN label VARCHAR(255),
    ADD COLUMN expires_at TIMESTAMPTZ,
    ADD CONSTRAINT api_keys_some_scope CHECK (scope_verifications OR scope_management);
"#;
const DOWN: &str = r#"
ALTER TABLE api_keys
    DROP CONSTRAINT api_keys_some_scope,
    DROP COLUMN expires_at,
    DROP COLUMN label,
    DROP COLUMN scope_management,
    DROP COLUMN scope_verifications,
    DROP COLUMN mode;
"#;

/// [`UP`] for SQLite: one column per statement, booleans 0/1, time as RFC 3339 text. SQLite
/// cannot add a table constraint, so "some scope" is a CHECK on the second flag's column
/// (a column CHECK may name other columns of the row).
const UP_SQLITE: &str = r#"
ALTER TABLE api_keys ADD COLUMN mode VARCHAR(8) NOT NULL DEFAULT 'live'
    CHECK (mode IN ('live', 'test'));
ALTER TABLE api_keys ADD COLUMN scope_verifications INTEGER NOT NULL DEFAULT 1
    CHECK (scope_verifications IN (0, 1));
ALTER TABLE api_keys ADD COLUMN scope_management INTEGER NOT NULL DEFAULT 1
    CHECK (scope_management IN (0, 1) AND (scope_verifications = 1 OR scope_management = 1));
ALTER TABLE api_keys ADD COLUMN label VARCHAR(255);
ALTER TABLE api_keys ADD COLUMN expires_at TEXT;
"#;
/// [`DOWN`] for SQLite. SQLite refuses to drop a column that a CHECK names, and the CHECKs here
/// are on the columns themselves, so each goes with its column.
const DOWN_SQLITE: &str = r#"
ALTER TABLE api_keys DROP COLUMN expires_at;
ALTER TABLE api_keys DROP COLUMN label;
ALTER TABLE api_keys DROP COLUMN scope_management;
ALTER TABLE api_keys DROP COLUMN scope_verifications;
ALTER TABLE api_keys DROP COLUMN mode;
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
