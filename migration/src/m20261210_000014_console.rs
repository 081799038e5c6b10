//! The company console (PRODUCT.md, "Company console"):
//!
//! - `console_links`: single-use sign-in links, stored as the SHA-256 of their token; `used_at`
//!   is set by the one sign-in that consumes the link;
//! - `console_sessions`: a signed-in browser, stored as the SHA-256 of its cookie, with the mode
//!   it acts in, its CSRF token, and the instants that bound it (12 h at most, 1 h idle).
//!
//! Both belong to a company and go with it; expired rows are deleted by the retention sweep.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE console_links (
    token_hash VARCHAR(64) PRIMARY KEY,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE INDEX console_links_expires_at_idx ON console_links (expires_at);
CREATE TABLE console_sessions (
    session_hash VARCHAR(64) PRIMARY KEY,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode BOOLEAN NOT NULL,
    csrf_token VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_expires_at_idx ON console_sessions (expires_at);
"#;
const DOWN: &str = r#"
DROP TABLE console_sessions;
DROP TABLE console_links;
"#;

const UP_SQLITE: &str = r#"
CREATE TABLE console_links (
    token_hash VARCHAR(64) PRIMARY KEY,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX console_links_expires_at_idx ON console_links (expires_at);
CREATE TABLE console_sessions (
    session_hash VARCHAR(64) PRIMARY KEY,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    csrf_token VARCHAR(64) NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX console_sessions_expires_at_idx ON console_sessions (expires_at);
"#;
const DOWN_SQLITE: &str = DOWN;

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
