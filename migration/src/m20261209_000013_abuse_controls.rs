//! Abuse controls (PRODUCT.md, "Abuse controls"):
//!
//! - a company's own overrides of the per-number initiation limit and of the deny cooldown,
//!   and its allowed countries (`NULL`: the configured default; an empty list: every country);
//! - `number_blocks`: a person (the holder of a number, through a token bound to it) blocks a
//!   company; the row is the block, deleted when the person unblocks (no tombstone);
//! - `deny_cooldowns`: the last "not me" of a number for a company and mode, written with the
//!   deny itself, so that erasing the denied session does not lift the cooldown; deleted by the
//!   retention sweep once the cooldown is over;
//! - `initiation_refusals`: refusals by the controls above, counted per company, mode, reason
//!   and hour (the summary's `blocked`); an upsert per refusal, never a row per request.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE companies
    ADD COLUMN rate_limit_initiate_per_number INTEGER
        CHECK (rate_limit_initiate_per_number BETWEEN 1 AND 1000000),
    ADD COLUMN rate_limit_initiate_per_number_window_seconds INTEGER
        CHECK (rate_limit_initiate_per_number_window_seconds BETWEEN 1 AND 604800),
    ADD COLUMN deny_cooldown_seconds INTEGER
        CHECK (deny_cooldown_seconds BETWEEN 0 AND 31536000),
    ADD COLUMN allowed_countries VARCHAR(1024)
        CHECK (allowed_countries ~ '^([A-Z]{2}(,[A-Z]{2})*)?$');
CREATE TABLE number_blocks (
    mobile_number VARCHAR(20) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    blocked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (mobile_number, company_id)
);
CREATE TABLE deny_cooldowns (
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode BOOLEAN NOT NULL,
    mobile_number VARCHAR(20) NOT NULL,
    denied_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (company_id, livemode, mobile_number)
);
CREATE INDEX deny_cooldowns_denied_at_idx ON deny_cooldowns (company_id, denied_at);
CREATE TABLE initiation_refusals (
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode BOOLEAN NOT NULL,
    reason VARCHAR(32) NOT NULL CHECK (reason IN
        ('number_rate_limited', 'recently_denied', 'blocked_by_user', 'country_not_allowed')),
    hour TIMESTAMPTZ NOT NULL,
    refusals BIGINT NOT NULL CHECK (refusals > 0),
    PRIMARY KEY (company_id, livemode, hour, reason)
);
"#;
const DOWN: &str = r#"
DROP TABLE initiation_refusals;
DROP TABLE deny_cooldowns;
DROP TABLE number_blocks;
ALTER TABLE companies
    DROP COLUMN allowed_countries,
    DROP COLUMN deny_cooldown_seconds,
    DROP COLUMN rate_limit_initiate_per_number_window_seconds,
    DROP COLUMN rate_limit_initiate_per_number;
"#;

const UP_SQLITE: &str = r#"
ALTER TABLE companies ADD COLUMN rate_limit_initiate_per_number INTEGER
    CHECK (rate_limit_initiate_per_number BETWEEN 1 AND 1000000);
ALTER TABLE companies ADD COLUMN rate_limit_initiate_per_number_window_seconds INTEGER
    CHECK (rate_limit_initiate_per_number_window_seconds BETWEEN 1 AND 604800);
ALTER TABLE companies ADD COLUMN deny_cooldown_seconds INTEGER
    CHECK (deny_cooldown_seconds BETWEEN 0 AND 31536000);
ALTER TABLE companies ADD COLUMN allowed_countries VARCHAR(1024)
    CHECK (allowed_countries NOT GLOB '*[^A-Z,]*' AND length(allowed_countries) % 3 = 2
           OR allowed_countries = '');
CREATE TABLE number_blocks (
    mobile_number VARCHAR(20) NOT NULL,
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    blocked_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    PRIMARY KEY (mobile_number, company_id)
);
CREATE TABLE deny_cooldowns (
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    mobile_number VARCHAR(20) NOT NULL,
    denied_at TEXT NOT NULL,
    PRIMARY KEY (company_id, livemode, mobile_number)
);
CREATE INDEX deny_cooldowns_denied_at_idx ON deny_cooldowns (company_id, denied_at);
CREATE TABLE initiation_refusals (
    company_id VARCHAR(255) NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    livemode INTEGER NOT NULL CHECK (livemode IN (0, 1)),
    reason VARCHAR(32) NOT NULL CHECK (reason IN
        ('number_rate_limited', 'recently_denied', 'blocked_by_user', 'country_not_allowed')),
    hour TEXT NOT NULL,
    refusals INTEGER NOT NULL CHECK (refusals > 0),
    PRIMARY KEY (company_id, livemode, hour, reason)
);
"#;
const DOWN_SQLITE: &str = r#"
DROP TABLE initiation_refusals;
DROP TABLE deny_cooldowns;
DROP TABLE number_blocks;
ALTER TABLE companies DROP COLUMN allowed_countries;
ALTER TABLE companies DROP COLUMN deny_cooldown_seconds;
ALTER TABLE companies DROP COLUMN rate_limit_initiate_per_number_window_seconds;
ALTER TABLE companies DROP COLUMN rate_limit_initiate_per_number;
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
