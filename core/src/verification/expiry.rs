//! Expiry: pending sessions past their expiry become `expired`, each with its outbox event, in
//! bounded batches that several workers share (PostgreSQL) or one writer runs (SQLite).

use sea_orm::{DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement, TransactionTrait};
use truenumber_entities::verification_session::Model as SessionRow;

use crate::{
    storage::sql::session_columns,
    webhooks::events::{self, EVENTS_FROM_UPD},
};

#[derive(Debug, FromQueryResult)]
struct ExpiredEvent {
    event_id: String,
}

/// PostgreSQL (`$1` batch size): due sessions through the open-session index
/// (`completed_at IS NULL`, see migration 3), locked `SKIP LOCKED`, expired with their events
/// in one statement.
pub static EXPIRE_DUE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH due AS ( \
           SELECT id FROM verification_sessions \
           WHERE completed_at IS NULL AND status = 'pending' AND expires_at <= now() \
           ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED), \
         upd AS ( \
           UPDATE verification_sessions vs SET status = 'expired', completed_at = now() \
           FROM due WHERE vs.id = due.id AND vs.status = 'pending' \
           RETURNING vs.*), \
         {EVENTS_FROM_UPD} \
         SELECT event_id FROM ev"
    )
});

/// SQLite's counterpart of [`EXPIRE_DUE_SQL`] (`$1` batch size, `$2` now): the update, whose
/// rows then get their events in the same transaction ([`events::insert_event_sqlite`]).
/// It names its columns (never `*`: see [`crate::storage::sql`]).
pub const EXPIRE_DUE_SQLITE: &str = concat!(
    "UPDATE verification_sessions \
     SET status = 'expired', completed_at = $2 \
     WHERE id IN ( \
       SELECT id FROM verification_sessions \
       WHERE completed_at IS NULL AND status = 'pending' AND expires_at <= $2 \
       ORDER BY expires_at LIMIT $1) \
     RETURNING ",
    session_columns!()
);

/// Expires up to `batch` pending sessions past their expiry, each with its event. Several
/// workers never double-expire: PostgreSQL skips rows another sweeper has locked and expires
/// a session only if still pending; SQLite has one writer at a time. Returns the new event
/// ids, to publish.
pub async fn expire_due_sessions(
    db: &DatabaseConnection,
    batch: u64,
) -> Result<Vec<String>, DbErr> {
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    if db.get_database_backend() != DbBackend::Sqlite {
        let rows = ExpiredEvent::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            EXPIRE_DUE_SQL.as_str(),
            [batch.into()],
        ))
        .all(db)
        .await?;
        return Ok(rows.into_iter().map(|r| r.event_id).collect());
    }
    let now = crate::storage::sql::now();
    crate::storage::db::within_transaction_limit(DbBackend::Sqlite, async {
        let txn = db.begin().await?;
        let expired = SessionRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            EXPIRE_DUE_SQLITE,
            [batch.into(), now.into()],
        ))
        .all(&txn)
        .await?;
        let mut ids = Vec::with_capacity(expired.len());
        for s in expired {
            let session = crate::verification::VerificationSession::from(s);
            ids.push(events::insert_event_sqlite(&txn, &session.terminal(), now).await?);
        }
        txn.commit().await?;
        Ok(ids)
    })
    .await
}
