//! Test mode, "not me", and number matching (PRODUCT.md, "Test mode", "POST
//! /verification/deny", number matching under initiate, "The app's view"):
//! - `verification_sessions.livemode`: a test key's sessions are `false`. The idempotency key
//!   becomes `(request_id, company_id, livemode)`, so a test `requestId` never meets a live one
//!   (neither replaying it nor answering `DUPLICATE_REQUEST` would keep the modes apart). The
//!   listing index leads with `(company_id, livemode)` for the same reason.
//! - `verification_sessions.match_code`: two digits when the company asked for number
//!   matching, else `NULL`.
//! - `denied` joins the statuses of sessions and of events.
//! - `verification_sessions_open_number_idx`: the app's pending requests for one number, a
//!   range of the open live sessions only (completed and test sessions never enter it).
//! - `verification_events.livemode` and `webhook_deliveries.livemode`: a key sees its own
//!   mode's events and deliveries.
//!
//! Down: test data goes (it would otherwise become live data), and `denied` becomes `failed`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE verification_sessions
    ADD COLUMN livemode BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN match_code VARCHAR(2) CHECK (match_code ~ '^[0-9][0-9]$'),
    DROP CONSTRAINT verification_sessions_status_check,
    ADD CONSTRAINT verification_sessions_status_check
        CHECK (status IN ('pending', 'verified', 'failed', 'denied', 'expired')),
    DROP CONSTRAINT verification_sessions_request_company_key,
    ADD CONSTRAINT verification_sessions_request_company_mode_key
        UNIQUE (request_id, company_id, livemode);
DROP INDEX verification_sessions_company_created_idx;
CREATE INDEX verification_sessions_company_created_idx
    ON verification_sessions (company_id, livemode, created_at DESC, id DESC)
    WHERE created_at IS NOT NULL;
CREATE INDEX verification_sessions_open_number_idx
    ON verification_sessions (mobile_number, created_at DESC)
    WHERE completed_at IS NULL AND livemode;
ALTER TABLE verification_events
    ADD COLUMN livemode BOOLEAN NOT NULL DEFAULT true,
    DROP CONSTRAINT verification_events_status_check,
    ADD CONSTRAINT verification_events_status_check
        CHECK (status IN ('verified', 'failed', 'denied', 'expired'));
ALTER TABLE webhook_deliveries ADD COLUMN livemode BOOLEAN NOT NULL DEFAULT true;
"#;

const DOWN: &str = r#"
DELETE FROM webhook_deliveries WHERE NOT livemode;
DELETE FROM webhook_deliveries
    WHERE event_id IN (SELECT id FROM verification_events WHERE NOT livemode);
DELETE FROM verification_events WHERE NOT livemode;
DELETE FROM verification_sessions WHERE NOT livemode;
UPDATE verification_events SET status = 'failed',
    payload = jsonb_set(payload, '{status}', '"failed"') WHERE status = 'denied';
UPDATE verification_sessions SET status = 'failed' WHERE status = 'denied';
ALTER TABLE webhook_deliveries DROP COLUMN livemode;
ALTER TABLE verification_events
    DROP COLUMN livemode,
    DROP CONSTRAINT verification_events_status_check,
    ADD CONSTRAINT verification_events_status_check
        CHECK (status IN ('verified', 'failed', 'expired'));
DROP INDEX verification_sessions_open_number_idx;
DROP INDEX verification_sessions_company_created_idx;
ALTER TABLE verification_sessions
    DROP CONSTRAINT verification_sessions_request_company_mode_key,
    ADD CONSTRAINT verification_sessions_request_company_key UNIQUE (request_id, company_id),
    DROP CONSTRAINT verification_sessions_status_check,
    ADD CONSTRAINT verification_sessions_status_check
        CHECK (status IN ('pending', 'verified', 'failed', 'expired')),
    DROP COLUMN match_code,
    DROP COLUMN livemode;
CREATE INDEX verification_sessions_company_created_idx
    ON verification_sessions (company_id, created_at DESC, id DESC) WHERE created_at IS NOT NULL;
"#;

/// [`UP`] for SQLite, which cannot change a CHECK: both tables are rebuilt. Nothing
/// references `verification_sessions`; `webhook_deliveries` references `verification_events`
/// by name, so its foreign key is deferred to the commit (as in migration 9).
const UP_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
CREATE TABLE verification_sessions_new (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    verification_id VARCHAR(64) NOT NULL UNIQUE,
    mobile_number VARCHAR(20) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    request_id VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'failed', 'denied', 'expired')),
    app_user_id VARCHAR(255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    verified_at TEXT,
    completed_at TEXT,
    expires_at TEXT NOT NULL,
    livemode INTEGER NOT NULL DEFAULT 1 CHECK (livemode IN (0, 1)),
    match_code VARCHAR(2) CHECK (match_code GLOB '[0-9][0-9]'),
    CONSTRAINT verification_sessions_open_iff_pending
        CHECK ((status = 'pending') = (completed_at IS NULL))
);
INSERT INTO verification_sessions_new (id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at)
    SELECT id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at FROM verification_sessions;
DROP TABLE verification_sessions;
ALTER TABLE verification_sessions_new RENAME TO verification_sessions;
CREATE UNIQUE INDEX verification_sessions_request_company_mode_key
    ON verification_sessions (request_id, company_id, livemode);
CREATE INDEX verification_sessions_open_expiry_idx
    ON verification_sessions (expires_at) WHERE completed_at IS NULL;
CREATE INDEX verification_sessions_company_completed_idx
    ON verification_sessions (company_id, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX verification_sessions_company_created_idx
    ON verification_sessions (company_id, livemode, created_at DESC, id DESC)
    WHERE created_at IS NOT NULL;
CREATE INDEX verification_sessions_open_number_idx
    ON verification_sessions (mobile_number, created_at DESC)
    WHERE completed_at IS NULL AND livemode;

CREATE TABLE verification_events_new (
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

ALTER TABLE webhook_deliveries
    ADD COLUMN livemode INTEGER NOT NULL DEFAULT 1 CHECK (livemode IN (0, 1));
"#;

/// [`DOWN`] for SQLite: test data and the new columns go, `denied` becomes `failed`, and both
/// tables are rebuilt as migration 9 left them.
const DOWN_SQLITE: &str = r#"
PRAGMA defer_foreign_keys = ON;
DELETE FROM webhook_deliveries WHERE NOT livemode;
DELETE FROM webhook_deliveries
    WHERE event_id IN (SELECT id FROM verification_events WHERE NOT livemode);
DELETE FROM verification_events WHERE NOT livemode;
DELETE FROM verification_sessions WHERE NOT livemode;
UPDATE verification_events SET status = 'failed',
    payload = json_set(payload, '$.status', 'failed') WHERE status = 'denied';
UPDATE verification_sessions SET status = 'failed' WHERE status = 'denied';
ALTER TABLE webhook_deliveries DROP COLUMN livemode;

CREATE TABLE verification_sessions_old (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    verification_id VARCHAR(64) NOT NULL UNIQUE,
    mobile_number VARCHAR(20) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    request_id VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'failed', 'expired')),
    app_user_id VARCHAR(255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    verified_at TEXT,
    completed_at TEXT,
    expires_at TEXT NOT NULL,
    CONSTRAINT verification_sessions_open_iff_pending
        CHECK ((status = 'pending') = (completed_at IS NULL))
);
INSERT INTO verification_sessions_old (id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at)
    SELECT id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at FROM verification_sessions;
DROP TABLE verification_sessions;
ALTER TABLE verification_sessions_old RENAME TO verification_sessions;
CREATE UNIQUE INDEX verification_sessions_request_company_key
    ON verification_sessions (request_id, company_id);
CREATE INDEX verification_sessions_open_expiry_idx
    ON verification_sessions (expires_at) WHERE completed_at IS NULL;
CREATE INDEX verification_sessions_company_completed_idx
    ON verification_sessions (company_id, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX verification_sessions_company_created_idx
    ON verification_sessions (company_id, created_at DESC, id DESC) WHERE created_at IS NOT NULL;

CREATE TABLE verification_events_old (
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
CREATE INDEX verification_events_company_unbound_idx
    ON verification_events (company_id, created_at) WHERE verification_id IS NULL;
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
