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

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
