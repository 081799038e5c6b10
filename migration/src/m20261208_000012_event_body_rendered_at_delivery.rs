//! The webhook body is no longer stored with its event: it is rendered from the event and its
//! session when the event is delivered, by one builder in Rust
//! (`truenumber_core::webhooks::body`), in both modes. `verification_events.payload` becomes
//! nullable: new events leave it `NULL`, earlier events keep theirs (nothing reads it).
//!
//! Only `NOT NULL` goes, so API nodes and workers of the previous release, which still write
//! the column, keep working beside the new ones during a rolling upgrade (upgrade the workers
//! first: a previous worker cannot deliver an event without its stored body). A later
//! migration may drop the column.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE verification_events ALTER COLUMN payload DROP NOT NULL;
"#;

/// Back to a stored body: the events written since get theirs, built as the previous release
/// built them.
const DOWN: &str = r#"
UPDATE verification_events e SET payload = jsonb_build_object(
    'event', 'verification.completed',
    'verificationId', s.verification_id,
    'status', s.status,
    'livemode', s.livemode,
    'mobileNumber', s.mobile_number,
    'verifiedAt', to_char(s.verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'companyId', s.company_id,
    'requestId', s.request_id,
    'numberBinding', s.number_binding,
    'phoneVerifiedAt', to_char(s.phone_verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
FROM verification_sessions s
WHERE e.payload IS NULL AND e.verification_id = s.verification_id;
UPDATE verification_events SET payload = jsonb_build_object(
    'event', event_type,
    'companyId', company_id,
    'livemode', livemode,
    'timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
WHERE payload IS NULL;
ALTER TABLE verification_events ALTER COLUMN payload SET NOT NULL;
"#;

/// [`UP`] for SQLite, which cannot drop a `NOT NULL`: the table is rebuilt as migration 10 left
/// it but for that. `webhook_deliveries` references it by name, so its foreign key is
/// deferred to the commit (as in migrations 9 and 10).
const UP_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
CREATE TABLE verification_events_new (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) CHECK (status IN ('verified', 'failed', 'denied', 'expired')),
    payload TEXT CHECK (json_valid(payload)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    published_at TEXT,
    relay_claimed_until TEXT,
    livemode INTEGER NOT NULL DEFAULT 1 CHECK (livemode IN (0, 1)),
    CONSTRAINT verification_events_kind CHECK (
        (event_type = 'verification.completed') = (verification_id IS NOT NULL AND status IS NOT NULL))
);
INSERT INTO verification_events_new
    (id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until, livemode)
    SELECT id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until, livemode
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

/// [`DOWN`] for SQLite: the bodies filled in, then the table rebuilt with `NOT NULL`.
const DOWN_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
UPDATE verification_events SET payload = (
    SELECT json_object(
        'event', 'verification.completed',
        'verificationId', s.verification_id,
        'status', s.status,
        'livemode', json(CASE WHEN s.livemode THEN 'true' ELSE 'false' END),
        'mobileNumber', s.mobile_number,
        'verifiedAt', strftime('%Y-%m-%dT%H:%M:%fZ', s.verified_at),
        'companyId', s.company_id,
        'requestId', s.request_id,
        'numberBinding', s.number_binding,
        'phoneVerifiedAt', strftime('%Y-%m-%dT%H:%M:%fZ', s.phone_verified_at))
    FROM verification_sessions s WHERE s.verification_id = verification_events.verification_id)
WHERE payload IS NULL AND verification_id IS NOT NULL;
UPDATE verification_events SET payload = json_object(
    'event', event_type,
    'companyId', company_id,
    'livemode', json(CASE WHEN livemode THEN 'true' ELSE 'false' END),
    'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', created_at))
WHERE payload IS NULL;
CREATE TABLE verification_events_old (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) CHECK (status IN ('verified', 'failed', 'denied', 'expired')),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    published_at TEXT,
    relay_claimed_until TEXT,
    livemode INTEGER NOT NULL DEFAULT 1 CHECK (livemode IN (0, 1)),
    CONSTRAINT verification_events_kind CHECK (
        (event_type = 'verification.completed') = (verification_id IS NOT NULL AND status IS NOT NULL))
);
INSERT INTO verification_events_old
    (id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until, livemode)
    SELECT id, event_type, verification_id, company_id, status, payload, created_at, published_at, relay_claimed_until, livemode
    FROM verification_events;
DROP TABLE verification_events;
ALTER TABLE verification_events_old RENAME TO verification_events;
CREATE UNIQUE INDEX verification_events_one_per_session
    ON verification_events (verification_id, event_type);
CREATE INDEX verification_events_unpublished_idx
    ON verification_events (created_at) WHERE published_at IS NULL;
CREATE INDEX verification_events_company_unbound_idx
    ON verification_events (company_id, created_at) WHERE verification_id IS NULL;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
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
