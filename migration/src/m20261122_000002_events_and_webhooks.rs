//! The transactional outbox of verification events, and webhook deliveries with their attempts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE verification_events (
    id VARCHAR(64) PRIMARY KEY,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) NOT NULL CHECK (status IN ('verified', 'failed', 'expired')),
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
-- Exactly one terminal event per session, whoever writes it.
CREATE UNIQUE INDEX verification_events_one_per_session
    ON verification_events (verification_id, event_type);
-- The relay reads what is still unpublished, oldest first.
CREATE INDEX verification_events_unpublished_idx
    ON verification_events (created_at) WHERE published_at IS NULL;

CREATE TABLE webhook_deliveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id VARCHAR(64) NOT NULL REFERENCES verification_events (id),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    url VARCHAR(2048) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- Attempts made before the latest redelivery; the retry schedule restarts after it.
    round_start INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    CONSTRAINT webhook_deliveries_event_company_key UNIQUE (event_id, company_id)
);
CREATE INDEX webhook_deliveries_company_idx ON webhook_deliveries (company_id, created_at DESC);
-- Pending deliveries whose next attempt is overdue (their retry message was lost).
CREATE INDEX webhook_deliveries_overdue_idx
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    CONSTRAINT webhook_attempts_delivery_attempt_key UNIQUE (delivery_id, attempt)
);
"#;

const DOWN: &str = r#"
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE verification_events;
"#;

/// [`UP`] for SQLite (standalone mode): time as RFC 3339 UTC text (defaults as
/// [`crate::SQLITE_(strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))`]), UUIDs 16-byte blobs, JSON as text.
const UP_SQLITE: &str = r#"
CREATE TABLE verification_events (
    id VARCHAR(64) PRIMARY KEY NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    verification_id VARCHAR(64) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    status VARCHAR(20) NOT NULL CHECK (status IN ('verified', 'failed', 'expired')),
    payload TEXT NOT NULL CHECK (json_valid(payload)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    published_at TEXT
);
CREATE UNIQUE INDEX verification_events_one_per_session
    ON verification_events (verification_id, event_type);
CREATE INDEX verification_events_unpublished_idx
    ON verification_events (created_at) WHERE published_at IS NULL;

CREATE TABLE webhook_deliveries (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    event_id VARCHAR(64) NOT NULL REFERENCES verification_events (id),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    url VARCHAR(2048) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    round_start INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_status_code INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    completed_at TEXT,
    CONSTRAINT webhook_deliveries_event_company_key UNIQUE (event_id, company_id)
);
CREATE INDEX webhook_deliveries_company_idx ON webhook_deliveries (company_id, created_at DESC);
CREATE INDEX webhook_deliveries_overdue_idx
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    delivery_id BLOB NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    attempted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    CONSTRAINT webhook_attempts_delivery_attempt_key UNIQUE (delivery_id, attempt)
);
"#;

/// [`DOWN`] for SQLite (the same statements).
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
