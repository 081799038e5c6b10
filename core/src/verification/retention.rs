//! Retention: completed sessions older than their company's window are deleted with their
//! events, deliveries and attempts, and `webhook.test` events with their deliveries, in bounded
//! batches (PostgreSQL: `SKIP LOCKED`, so several workers share the work).

use sea_orm::{DatabaseConnection, DbBackend, DbErr, FromQueryResult, Statement, TransactionTrait};

/// Deletes up to `$3` of company `$1`'s sessions completed before `$2`, oldest first, with
/// their events and the events' deliveries (attempts cascade), and returns how many sessions
/// went. One statement; rows locked `SKIP LOCKED` so several workers share the work; the
/// foreign key from deliveries to events is checked at the statement's end, after both
/// deletes. Its SQLite counterpart is [`RETENTION_DELETE_SQLITE`].
pub const RETENTION_DELETE_SQL: &str = "WITH doomed AS ( \
           SELECT id, verification_id FROM verification_sessions \
           WHERE company_id = $1 AND completed_at IS NOT NULL AND completed_at < $2 \
           ORDER BY completed_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
         doomed_events AS ( \
           SELECT e.id FROM verification_events e JOIN doomed d \
             ON e.verification_id = d.verification_id), \
         gone_deliveries AS ( \
           DELETE FROM webhook_deliveries w USING doomed_events de \
           WHERE w.event_id = de.id RETURNING w.id), \
         gone_events AS ( \
           DELETE FROM verification_events e USING doomed_events de \
           WHERE e.id = de.id RETURNING e.id), \
         gone AS ( \
           DELETE FROM verification_sessions s USING doomed d WHERE s.id = d.id RETURNING s.id) \
         SELECT (SELECT COUNT(*) FROM gone) AS sessions, \
                (SELECT COUNT(*) FROM gone_events) AS events, \
                (SELECT COUNT(*) FROM gone_deliveries) AS deliveries";

/// [`RETENTION_DELETE_SQL`] on SQLite: three deletes of the same batch (the subquery below,
/// same `$1`–`$3`) in one transaction. The first writes, so the transaction holds the write
/// lock from its start and the batch cannot change between them; the sessions go last, so
/// the batch is still found by the first two.
pub static RETENTION_DELETE_SQLITE: std::sync::LazyLock<[String; 3]> =
    std::sync::LazyLock::new(|| {
        let doomed = "SELECT verification_id FROM verification_sessions \
             WHERE company_id = $1 AND completed_at IS NOT NULL AND completed_at < $2 \
             ORDER BY completed_at LIMIT $3";
        [
            format!(
                "DELETE FROM webhook_deliveries WHERE event_id IN ( \
                   SELECT id FROM verification_events WHERE verification_id IN ({doomed}))"
            ),
            format!("DELETE FROM verification_events WHERE verification_id IN ({doomed})"),
            format!("DELETE FROM verification_sessions WHERE verification_id IN ({doomed})"),
        ]
    });

/// Deletes up to `$3` of company `$1`'s events about no session (`webhook.test`) created
/// before `$2`, with their deliveries; returns how many events went. Its SQLite counterpart is
/// [`RETENTION_DELETE_UNBOUND_SQLITE`].
pub const RETENTION_DELETE_UNBOUND_SQL: &str = "WITH doomed AS ( \
       SELECT id FROM verification_events \
       WHERE company_id = $1 AND verification_id IS NULL AND created_at < $2 \
       ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED), \
     gone_deliveries AS ( \
       DELETE FROM webhook_deliveries w USING doomed d WHERE w.event_id = d.id RETURNING w.id), \
     gone AS ( \
       DELETE FROM verification_events e USING doomed d WHERE e.id = d.id RETURNING e.id) \
     SELECT (SELECT COUNT(*) FROM gone) AS sessions";

/// [`RETENTION_DELETE_UNBOUND_SQL`] on SQLite: two deletes of the same batch in one
/// transaction, deliveries first.
pub static RETENTION_DELETE_UNBOUND_SQLITE: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| {
        let doomed = "SELECT id FROM verification_events \
             WHERE company_id = $1 AND verification_id IS NULL AND created_at < $2 \
             ORDER BY created_at LIMIT $3";
        [
            format!("DELETE FROM webhook_deliveries WHERE event_id IN ({doomed})"),
            format!("DELETE FROM verification_events WHERE id IN ({doomed})"),
        ]
    });

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionRun {
    /// Completed sessions (each with its events, deliveries and attempts).
    pub sessions: u64,
    /// Events about no session (`webhook.test`), with their deliveries.
    pub test_events: u64,
}

/// Applies the retention policy: for each company, its sessions completed more than its
/// window ago (its own `data_retention_days`, else `default_days`) are deleted, `batch` at a
/// time, with their events, deliveries and attempts; so are its `webhook.test` events created
/// before the window.
pub async fn apply_retention(
    db: &DatabaseConnection,
    default_days: u32,
    batch: u64,
) -> Result<RetentionRun, DbErr> {
    use sea_orm::{EntityTrait, QuerySelect};
    use truenumber_entities::company;
    let companies: Vec<(String, Option<i32>)> = company::Entity::find()
        .select_only()
        .column(company::Column::CompanyId)
        .column(company::Column::DataRetentionDays)
        .into_tuple()
        .all(db)
        .await?;
    let full = batch;
    let batch = i64::try_from(batch).unwrap_or(i64::MAX);
    let mut run = RetentionRun::default();
    for (company_id, days) in companies {
        let days =
            crate::companies::policy::Overrides::retention(days).retention_days_or(default_days);
        let cutoff = crate::storage::sql::now() - chrono::Duration::days(i64::from(days));
        for (postgres, sqlite, total) in [
            (
                RETENTION_DELETE_SQL,
                &RETENTION_DELETE_SQLITE[..],
                &mut run.sessions,
            ),
            (
                RETENTION_DELETE_UNBOUND_SQL,
                &RETENTION_DELETE_UNBOUND_SQLITE[..],
                &mut run.test_events,
            ),
        ] {
            loop {
                let gone = delete_batch(db, (postgres, sqlite), &company_id, cutoff, batch).await?;
                *total += gone;
                if gone < full {
                    break;
                }
            }
        }
    }
    crate::companies::console::delete_expired(db).await?;
    Ok(run)
}

/// Runs one batch of a retention delete: the PostgreSQL statement (which returns the count as
/// `sessions`), or the SQLite statements in one transaction (the last one's count).
async fn delete_batch(
    db: &DatabaseConnection,
    (postgres, sqlite): (&str, &[String]),
    company_id: &str,
    cutoff: chrono::DateTime<chrono::Utc>,
    batch: i64,
) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct Gone {
        sessions: i64,
    }
    let values = || -> [sea_orm::Value; 3] { [company_id.into(), cutoff.into(), batch.into()] };
    if db.get_database_backend() != DbBackend::Sqlite {
        let gone = Gone::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            postgres,
            values(),
        ))
        .one(db)
        .await?;
        return Ok(gone.map_or(0, |g| u64::try_from(g.sessions).unwrap_or(0)));
    }
    use sea_orm::ConnectionTrait;
    crate::storage::db::within_transaction_limit(DbBackend::Sqlite, async {
        let txn = db.begin().await?;
        let mut gone = 0;
        for sql in sqlite {
            gone = txn
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    sql.as_str(),
                    values(),
                ))
                .await?
                .rows_affected();
        }
        txn.commit().await?;
        // The last statement's count: the sessions (or events).
        Ok(gone)
    })
    .await
}
