//! Companies, their API keys, and verification sessions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE companies (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(255) NOT NULL,
    webhook_url VARCHAR(2048),
    webhook_secret VARCHAR(255) NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT true,
    rate_limit_initiate_per_hour INTEGER CHECK (rate_limit_initiate_per_hour > 0),
    rate_limit_status_per_hour INTEGER CHECK (rate_limit_status_per_hour > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    lookup_id VARCHAR(32) NOT NULL UNIQUE,
    key_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX api_keys_company_id_idx ON api_keys (company_id);

CREATE TABLE verification_sessions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    verification_id VARCHAR(64) NOT NULL UNIQUE,
    mobile_number VARCHAR(20) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id),
    request_id VARCHAR(255) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'verified', 'failed', 'expired')),
    app_user_id VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    verified_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT verification_sessions_company_request_key UNIQUE (company_id, request_id)
);
-- The sweeper reads pending sessions by expiry; terminal ones never enter this index.
CREATE INDEX verification_sessions_pending_expiry_idx
    ON verification_sessions (expires_at) WHERE status = 'pending';
"#;

const DOWN: &str = r#"
DROP TABLE verification_sessions;
DROP TABLE api_keys;
DROP TABLE companies;
"#;

/// [`UP`] for SQLite (standalone mode): time is RFC 3339 UTC text (defaults write it with
/// [`crate::SQLITE_NOW_DEFAULT`]), UUIDs 16-byte blobs, booleans 0/1. The idempotency key is a named
/// unique index rather than a table constraint, so that migration 3 can replace it (SQLite
/// cannot drop a table constraint).
const UP_SQLITE: &str = r#"
CREATE TABLE companies (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    company_id VARCHAR(255) NOT NULL UNIQUE,
    name VARCHAR(255) NOT NULL,
    webhook_url VARCHAR(2048),
    webhook_secret VARCHAR(255) NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    rate_limit_initiate_per_hour INTEGER CHECK (rate_limit_initiate_per_hour > 0),
    rate_limit_status_per_hour INTEGER CHECK (rate_limit_status_per_hour > 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))
);

CREATE TABLE api_keys (
    id BLOB PRIMARY KEY NOT NULL DEFAULT (randomblob(16)),
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    lookup_id VARCHAR(32) NOT NULL UNIQUE,
    key_hash VARCHAR(255) NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX api_keys_company_id_idx ON api_keys (company_id);

CREATE TABLE verification_sessions (
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
CREATE UNIQUE INDEX verification_sessions_company_request_key
    ON verification_sessions (company_id, request_id);
CREATE INDEX verification_sessions_pending_expiry_idx
    ON verification_sessions (expires_at) WHERE status = 'pending';
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
