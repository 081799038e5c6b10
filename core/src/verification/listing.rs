//! A company's own verifications: listed (keyset-paginated, filtered), summarised over a
//! window, and erased with their events and deliveries.
//!
//! A pending session past its expiry counts as `expired` everywhere here, before any sweep
//! has run, exactly as the status endpoint shows it.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use truenumber_entities::{
    verification_event, verification_session, verification_session::SessionStatus, webhook_delivery,
};
use uuid::Uuid;

use crate::{
    storage::sql::Twin, verification::VerificationSession, webhooks::deliveries::PageAfter,
};

/// What a listing keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only sessions that read this status now (`expired` includes pending ones past their
    /// expiry; `pending` excludes them).
    pub status: Option<SessionStatus>,
    /// Only the session of this `requestId`.
    pub request_id: Option<String>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

fn status_condition(status: SessionStatus, now: DateTime<Utc>) -> Condition {
    use verification_session::Column;
    let pending = Column::Status.eq(SessionStatus::Pending);
    match status {
        SessionStatus::Pending => Condition::all().add(pending).add(Column::ExpiresAt.gt(now)),
        SessionStatus::Expired => Condition::any()
            .add(Column::Status.eq(SessionStatus::Expired))
            .add(
                Condition::all()
                    .add(pending)
                    .add(Column::ExpiresAt.lte(now)),
            ),
        other => Condition::all().add(Column::Status.eq(other)),
    }
}

/// A row of the listing, with its surrogate id for the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    /// The surrogate id (the cursor's tie-breaker).
    pub id: Uuid,
    /// The session.
    pub session: VerificationSession,
}

/// One page of a company's sessions of one mode, newest first, starting after `after`. Asks
/// for `limit` rows; a full page means there may be more.
pub async fn list_page(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    filter: &SessionFilter,
    limit: u64,
    after: Option<PageAfter>,
) -> Result<Vec<ListedSession>, DbErr> {
    Ok(
        list_query(company_id, livemode, filter, limit, after, Utc::now())
            .all(db)
            .await?
            .into_iter()
            .map(|m| ListedSession {
                id: m.id,
                session: m.into(),
            })
            .collect(),
    )
}

/// The query of [`list_page`] (public so that its plan can be checked).
pub fn list_query(
    company_id: &str,
    livemode: bool,
    filter: &SessionFilter,
    limit: u64,
    after: Option<PageAfter>,
    now: DateTime<Utc>,
) -> sea_orm::Select<verification_session::Entity> {
    use verification_session::Column;
    // `created_at IS NOT NULL` (always true) is what lets the planner use the listing index,
    // which is partial on it (migration 8 says why).
    let mut query = verification_session::Entity::find()
        .filter(Column::CompanyId.eq(company_id))
        .filter(Column::Livemode.eq(livemode))
        .filter(Column::CreatedAt.is_not_null());
    if let Some(status) = filter.status {
        query = query.filter(status_condition(status, now));
    }
    if let Some(request_id) = &filter.request_id {
        query = query.filter(Column::RequestId.eq(request_id.as_str()));
    }
    if let Some(t) = filter.created_after {
        query = query.filter(Column::CreatedAt.gte(t));
    }
    if let Some(t) = filter.created_before {
        query = query.filter(Column::CreatedAt.lt(t));
    }
    if let Some(after) = after {
        query = query.filter(after.rows_after(Column::CreatedAt, Column::Id));
    }
    query
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .limit(limit)
}

/// A window's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Sessions created in the window.
    pub total: u64,
    /// Still pending (and not past expiry).
    pub pending: u64,
    /// Verified.
    pub verified: u64,
    /// Failed.
    pub failed: u64,
    /// Denied ("not me").
    pub denied: u64,
    /// Expired (swept or past expiry).
    pub expired: u64,
    /// verified / (total − pending); `None` when nothing has finished.
    pub conversion_rate: Option<f64>,
    /// The median of `verified_at − created_at` over the verified sessions, in seconds.
    pub median_seconds_to_verify: Option<f64>,
}

/// Counts by stored status, with pending split at `$4` (now), of company `$1`'s sessions of
/// mode `$5` created in `[$2, $3)`. Plain SQL both engines run as written.
const COUNTS_SQL: &str = "SELECT \
       COUNT(*) AS total, \
       COALESCE(SUM(CASE WHEN status = 'pending' AND expires_at > $4 THEN 1 ELSE 0 END), 0) \
         AS pending, \
       COALESCE(SUM(CASE WHEN status = 'verified' THEN 1 ELSE 0 END), 0) AS verified, \
       COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
       COALESCE(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END), 0) AS denied, \
       COALESCE(SUM(CASE WHEN status = 'expired' OR (status = 'pending' AND expires_at <= $4) \
         THEN 1 ELSE 0 END), 0) AS expired \
     FROM verification_sessions \
     WHERE company_id = $1 AND livemode = $5 AND created_at >= $2 AND created_at < $3";

/// The `$4`-th (0-based) shortest time to verify, in seconds, among company `$1`'s verified
/// sessions of mode `$5` created in `[$2, $3)`: how the median is read without loading every duration.
pub const NTH_SECONDS_TO_VERIFY: Twin = Twin {
    postgres: "SELECT EXTRACT(EPOCH FROM (verified_at - created_at))::float8 AS seconds \
         FROM verification_sessions \
         WHERE company_id = $1 AND livemode = $5 AND status = 'verified' \
           AND created_at >= $2 AND created_at < $3 \
         ORDER BY seconds LIMIT 1 OFFSET $4",
    sqlite: "SELECT (julianday(verified_at) - julianday(created_at)) * 86400.0 AS seconds \
         FROM verification_sessions \
         WHERE company_id = $1 AND livemode = $5 AND status = 'verified' \
           AND created_at >= $2 AND created_at < $3 \
         ORDER BY seconds LIMIT 1 OFFSET $4",
};

/// The numbers of company `company_id`'s sessions of one mode created in `[from, to)`.
pub async fn summarise(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Summary, DbErr> {
    #[derive(FromQueryResult)]
    struct Counts {
        total: i64,
        pending: i64,
        verified: i64,
        failed: i64,
        denied: i64,
        expired: i64,
    }
    #[derive(FromQueryResult)]
    struct Seconds {
        seconds: f64,
    }
    let backend = db.get_database_backend();
    let counts = Counts::find_by_statement(sea_orm::Statement::from_sql_and_values(
        backend,
        COUNTS_SQL,
        [
            company_id.into(),
            from.into(),
            to.into(),
            Utc::now().into(),
            livemode.into(),
        ],
    ))
    .one(db)
    .await?
    .unwrap_or(Counts {
        total: 0,
        pending: 0,
        verified: 0,
        failed: 0,
        denied: 0,
        expired: 0,
    });
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let (total, pending, verified) = (n(counts.total), n(counts.pending), n(counts.verified));
    let nth = |k: u64| {
        Seconds::find_by_statement(NTH_SECONDS_TO_VERIFY.statement(
            backend,
            [
                company_id.into(),
                from.into(),
                to.into(),
                i64::try_from(k).unwrap_or(i64::MAX).into(),
                livemode.into(),
            ],
        ))
        .one(db)
    };
    let median = match verified {
        0 => None,
        v if v % 2 == 1 => nth(v / 2).await?.map(|s| s.seconds),
        v => match (nth(v / 2 - 1).await?, nth(v / 2).await?) {
            (Some(a), Some(b)) => Some(f64::midpoint(a.seconds, b.seconds)),
            _ => None,
        },
    };
    let finished = total.saturating_sub(pending);
    Ok(Summary {
        total,
        pending,
        verified,
        failed: n(counts.failed),
        denied: n(counts.denied),
        expired: n(counts.expired),
        // Counts far below 2^52 convert exactly.
        conversion_rate: (finished > 0).then(|| verified as f64 / finished as f64),
        median_seconds_to_verify: median,
    })
}

/// Erases company `company_id`'s session `verification_id` of one mode now, with its events,
/// their deliveries and attempts, in one transaction. `false` if there was none (or it is
/// another company's or mode's). A worker holding a message for an erased event finds nothing and drops it.
pub async fn erase(
    db: &DatabaseConnection,
    company_id: &str,
    livemode: bool,
    verification_id: &str,
) -> Result<bool, DbErr> {
    crate::storage::db::within_transaction_limit(db.get_database_backend(), async {
        let txn = db.begin().await?;
        let deleted = verification_session::Entity::delete_many()
            .filter(verification_session::Column::CompanyId.eq(company_id))
            .filter(verification_session::Column::Livemode.eq(livemode))
            .filter(verification_session::Column::VerificationId.eq(verification_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if deleted == 0 {
            return Ok(false);
        }
        let events: Vec<String> = verification_event::Entity::find()
            .select_only()
            .column(verification_event::Column::Id)
            .filter(verification_event::Column::CompanyId.eq(company_id))
            .filter(verification_event::Column::VerificationId.eq(verification_id))
            .into_tuple()
            .all(&txn)
            .await?;
        if !events.is_empty() {
            // Attempts go with their delivery (ON DELETE CASCADE).
            webhook_delivery::Entity::delete_many()
                .filter(webhook_delivery::Column::EventId.is_in(events.clone()))
                .exec(&txn)
                .await?;
            verification_event::Entity::delete_many()
                .filter(verification_event::Column::Id.is_in(events))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    })
    .await
}
