//! Data lifecycle and the companies' own listings (PRODUCT.md, "Data lifecycle" and
//! "Verifications, listed and summarised"):
//! - `companies.data_retention_days`: a company's own retention window (1–3650 days;
//!   `NULL`: `DATA_RETENTION_DAYS`).
//! - `verification_sessions_company_completed_idx`: the retention sweep deletes a company's
//!   completed sessions oldest first, a bounded range scan per company whatever the table's
//!   size (pending sessions, `completed_at IS NULL`, never enter it).
//! - `verification_sessions_company_created_idx`: a company's sessions newest first, for the
//!   keyset-paginated listing and the summary's creation window. It is partial on
//!   `created_at IS NOT NULL` (true of every row: the column is NOT NULL) so that only queries
//!   that say so, or bound `created_at`, can use it: the hot point lookups (status by
//!   `verification_id`, initiate's idempotent read by `(request_id, company_id)`) never see a
//!   `company_id`-leading index they could mistake for theirs in a cached generic plan
//!   (migration 3; `tests/it/query_plans.rs`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE companies ADD COLUMN data_retention_days INTEGER
    CHECK (data_retention_days BETWEEN 1 AND 3650);
CREATE INDEX verification_sessions_company_completed_idx
    ON verification_sessions (company_id, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX verification_sessions_company_created_idx
    ON verification_sessions (company_id, created_at DESC, id DESC) WHERE created_at IS NOT NULL;
"#;
const DOWN: &str = r#"
DROP INDEX verification_sessions_company_created_idx;
DROP INDEX verification_sessions_company_completed_idx;
ALTER TABLE companies DROP COLUMN data_retention_days;
"#;

/// [`UP`] for SQLite: the same (SQLite has partial and descending indexes).
const UP_SQLITE: &str = UP;
/// [`DOWN`] for SQLite: the same. (SQLite drops a column whose CHECK names only itself.)
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
