//! The holder of a number blocks a company (`PUT`/`DELETE /app/blocked-companies/{companyId}`,
//! or "not me" with `blockCompany`): the company's initiations for that number are refused
//! (`BLOCKED_BY_USER`) and its pending sessions leave the number's pending list. A block is the
//! person's data: listed to them, and gone, row and all, when they unblock.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};

use crate::storage::sql;

/// A company blocked by a number's holder, as the app lists it.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct BlockedCompany {
    /// The company.
    pub company_id: String,
    /// Its name.
    pub company_name: String,
    /// When it was blocked.
    pub blocked_at: DateTime<Utc>,
}

/// Why a block was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// No such company.
    #[error("company not found")]
    CompanyNotFound,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// Blocks company `$2` for number `$1` (`$3` now) if the company exists; a second block
/// changes nothing. Plain SQL both engines run as written.
const BLOCK_SQL: &str = "INSERT INTO number_blocks (mobile_number, company_id, blocked_at) \
     SELECT $1, company_id, $3 FROM companies WHERE company_id = $2 \
     ON CONFLICT (mobile_number, company_id) DO NOTHING";

/// Inserts the block of a session's company when "not me" asks for it: `$1` number, `$2`
/// company, `$3` now.
pub const BLOCK_ON_DENY_SQL: &str = "INSERT INTO number_blocks \
       (mobile_number, company_id, blocked_at) VALUES ($1, $2, $3) \
     ON CONFLICT (mobile_number, company_id) DO NOTHING";

/// Blocks `company_id` for `number` (E.164). Blocking twice is not an error.
pub async fn block(
    db: &impl ConnectionTrait,
    number: &str,
    company_id: &str,
) -> Result<(), BlockError> {
    let inserted = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            BLOCK_SQL,
            [number.into(), company_id.into(), sql::now().into()],
        ))
        .await?
        .rows_affected();
    if inserted == 0 && !company_exists(db, company_id).await? {
        return Err(BlockError::CompanyNotFound);
    }
    Ok(())
}

async fn company_exists(db: &impl ConnectionTrait, company_id: &str) -> Result<bool, DbErr> {
    Ok(db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT 1 AS found FROM companies WHERE company_id = $1",
            [company_id.into()],
        ))
        .await?
        .is_some())
}

/// Lifts `number`'s block of `company_id`: the row goes. Lifting a block that does not exist
/// is not an error.
pub async fn unblock(
    db: &impl ConnectionTrait,
    number: &str,
    company_id: &str,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM number_blocks WHERE mobile_number = $1 AND company_id = $2",
        [number.into(), company_id.into()],
    ))
    .await
    .map(|_| ())
}

/// The companies `number` has blocked, most recent first.
pub async fn list(db: &impl ConnectionTrait, number: &str) -> Result<Vec<BlockedCompany>, DbErr> {
    BlockedCompany::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT b.company_id, c.name AS company_name, b.blocked_at \
         FROM number_blocks b JOIN companies c ON c.company_id = b.company_id \
         WHERE b.mobile_number = $1 ORDER BY b.blocked_at DESC, b.company_id",
        [number.into()],
    ))
    .all(db)
    .await
}
