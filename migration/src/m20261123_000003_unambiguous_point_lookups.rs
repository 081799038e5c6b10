//! Indexes that leave the hot point lookups exactly one index to choose.
//!
//! PostgreSQL caches a generic plan per prepared statement and connection after five
//! executions, and replans only when the table's statistics change. While a table is small or
//! has no statistics (a fresh database, autovacuum lagging or off), two indexes can cost the
//! same, and the cached plan may pick the wrong one for good: the status lookup
//! (`verification_id = $1 AND company_id = $2`) was planned through the idempotency key
//! `(company_id, request_id)`, i.e. a scan of the company's every session, and submit through
//! the sweeper's partial index, a scan of every pending session (docs/PERFORMANCE.md).
//!
//! - The idempotency key becomes `(request_id, company_id)`: `company_id` alone no longer leads
//!   any index of this table, so a company predicate cannot be planned as a range scan.
//!   (`ON CONFLICT (company_id, request_id)` infers the index by its set of columns, so running
//!   code keeps working.)
//! - The sweeper's index becomes `(expires_at) WHERE completed_at IS NULL`, a predicate that
//!   submit's `status = 'pending'` cannot imply; a CHECK keeps `completed_at IS NULL` exactly
//!   equivalent to `status = 'pending'`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE verification_sessions
    DROP CONSTRAINT verification_sessions_company_request_key,
    ADD CONSTRAINT verification_sessions_request_company_key UNIQUE (request_id, company_id);

UPDATE verification_sessions
    SET completed_at = COALESCE(verified_at, expires_at)
    WHERE status <> 'pending' AND completed_at IS NULL;
UPDATE verification_sessions SET completed_at = NULL
    WHERE status = 'pending' AND completed_at IS NOT NULL;
ALTER TABLE verification_sessions
    ADD CONSTRAINT verification_sessions_open_iff_pending
    CHECK ((status = 'pending') = (completed_at IS NULL));

DROP INDEX verification_sessions_pending_expiry_idx;
CREATE INDEX verification_sessions_open_expiry_idx
    ON verification_sessions (expires_at) WHERE completed_at IS NULL;
"#;

const DOWN: &str = r#"
DROP INDEX verification_sessions_open_expiry_idx;
CREATE INDEX verification_sessions_pending_expiry_idx
    ON verification_sessions (expires_at) WHERE status = 'pending';
ALTER TABLE verification_sessions DROP CONSTRAINT verification_sessions_open_iff_pending;
ALTER TABLE verification_sessions
    DROP CONSTRAINT verification_sessions_request_company_key,
    ADD CONSTRAINT verification_sessions_company_request_key UNIQUE (company_id, request_id);
"#;

/// [`UP`] for SQLite, which can neither drop a table constraint nor add a CHECK: the table is
/// rebuilt with the CHECK (nothing references it, so foreign keys are unaffected), and the
/// idempotency key, a named unique index since migration 1 on SQLite, is replaced.
const UP_SQLITE: &str = r#"
UPDATE verification_sessions
    SET completed_at = COALESCE(verified_at, expires_at)
    WHERE status <> 'pending' AND completed_at IS NULL;
UPDATE verification_sessions SET completed_at = NULL
    WHERE status = 'pending' AND completed_at IS NOT NULL;

CREATE TABLE verification_sessions_new (
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
INSERT INTO verification_sessions_new (id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at)
    SELECT id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at FROM verification_sessions;
DROP TABLE verification_sessions;
ALTER TABLE verification_sessions_new RENAME TO verification_sessions;

CREATE UNIQUE INDEX verification_sessions_request_company_key
    ON verification_sessions (request_id, company_id);
CREATE INDEX verification_sessions_open_expiry_idx
    ON verification_sessions (expires_at) WHERE completed_at IS NULL;
"#;

/// [`DOWN`] for SQLite: the table rebuilt without the CHECK, the old indexes back.
const DOWN_SQLITE: &str = r#"
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
    expires_at TEXT NOT NULL
);
INSERT INTO verification_sessions_old (id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at)
    SELECT id, verification_id, mobile_number, company_id, request_id, status, app_user_id, created_at, verified_at, completed_at, expires_at FROM verification_sessions;
DROP TABLE verification_sessions;
ALTER TABLE verification_sessions_old RENAME TO verification_sessions;

CREATE UNIQUE INDEX verification_sessions_company_request_key
    ON verification_sessions (company_id, request_id);
CREATE INDEX verification_sessions_pending_expiry_idx
    ON verification_sessions (expires_at) WHERE status = 'pending';
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
