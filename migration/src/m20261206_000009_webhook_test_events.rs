//! Events that report on no verification: `webhook.test`, which a company sends itself to
//! check its endpoint (PRODUCT.md, "Company self-service"). Such an event has no
//! `verification_id` and no `status`; a `verification.completed` event keeps both (a CHECK).
//! Retention deletes test events by age, through their own small partial index.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE verification_events
    ALTER COLUMN verification_id DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL,
    ADD CONSTRAINT verification_events_kind CHECK (
        (event_type = 'verification.completed') = (verification_id IS NOT NULL AND status IS NOT NULL));
CREATE INDEX verification_events_company_unbound_idx
    ON verification_events (company_id, created_at) WHERE verification_id IS NULL;
"#;
const DOWN: &str = r#"
DELETE FROM webhook_deliveries
    WHERE event_id IN (SELECT id FROM verification_events WHERE verification_id IS NULL);
DELETE FROM verification_events WHERE verification_id IS NULL;
DROP INDEX verification_events_company_unbound_idx;
ALTER TABLE verification_events
    DROP CONSTRAINT verification_events_kind,
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN verification_id SET NOT NULL;
"#;

/// [`UP`] for SQLite, which cannot change a column's nullability: the table is rebuilt.
/// `webhook_deliveries` references it by name, so its foreign key is deferred to the commit
/// (`defer_foreign_keys`, which unlike `foreign_keys` may be set inside a transaction), by
/// when the rebuilt table holds every row again under the same name.
const UP_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
CREATE TABLE verification_events_new (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) CHECK (status IN ('verified', 'failed', 'expired')),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    published_at TEXT,
    relay_claimed_until TEXT,
    CONSTRAINT verification_events_kind CHECK (
        (event_type = 'verification.completed') = (verification_id IS NOT NULL AND status IS NOT NULL))
);
INSERT INTO verification_events_new
    (id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until)
    SELECT id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until
    FROM verification_events;
DROP TABLE verification_events;
ALTER TABLE verification_events_new RENAME TO verification_events;
CREATE UNIQUE INDEX verification_events_one_per_session
    ON verification_events (verification_id, event_type);
CREATE INDEX verification_events_unpublished_idx
    ON verification_events (created_at) WHERE published_at IS NULL;
CREATE INDEX verification_events_company_unbound_idx
    ON verification_events (company_id, created_at) WHERE verification_id IS NULL;
"#;
/// [`DOWN`] for SQLite: test events go, and the table is rebuilt as it was.
const DOWN_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
DELETE FROM webhook_deliveries
    WHERE event_id IN (SELECT id FROM verification_events WHERE verification_id IS NULL);
DELETE FROM verification_events WHERE verification_id IS NULL;
CREATE TABLE verification_events_old (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) NOT NULL CHECK (status IN ('verified', 'failed', 'expired')),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    published_at TEXT,
    relay_claimed_until TEXT
);
INSERT INTO verification_events_old
    (id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until)
    SELECT id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until
    FROM verification_events;
DROP TABLE verification_events;
ALTER TABLE verification_events_old RENAME TO verification_events;
CREATE UNIQUE INDEX verification_events_one_per_session
    ON verification_events (verification_id, event_type);
CREATE INDEX verification_events_unpublished_idx
    ON verification_events (created_at) WHERE published_at IS NULL;
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
