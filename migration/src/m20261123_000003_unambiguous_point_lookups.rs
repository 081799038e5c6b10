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
