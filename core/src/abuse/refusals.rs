//! Refused initiations, counted per company, mode, hour and reason (`initiation_refusals`): one
//! upsert per refusal, so a flood of refusals grows a counter, not a table. The summary reads
//! them per window, to the hour.

use chrono::{DateTime, DurationRound as _, Utc};
use sea_orm::{ActiveEnum as _, ConnectionTrait, DbErr, FromQueryResult, Statement};

use super::RefusalReason;
use crate::storage::sql;

/// Counts one refusal: `$1` company, `$2` livemode, `$3` reason, `$4` the hour.
const RECORD_SQL: &str = "INSERT INTO initiation_refusals \
       (company_id, livemode, reason, hour, refusals) VALUES ($1, $2, $3, $4, 1) \
     ON CONFLICT (company_id, livemode, hour, reason) \
     DO UPDATE SET refusals = initiation_refusals.refusals + 1";

/// The start of `at`'s hour.
fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(chrono::Duration::hours(1)).unwrap_or(at)
}

/// Counts a refused initiation of `company_id` in mode `livemode`.
pub async fn record(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    reason: RefusalReason,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        RECORD_SQL,
        [
            company_id.into(),
            livemode.into(),
            reason.to_value().into(),
            hour_of(sql::now()).into(),
        ],
    ))
    .await
    .map(|_| ())
}

/// Refusals in a window, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Over the per-number limit.
    pub number_rate_limited: u64,
    /// Within a deny's cooldown.
    pub recently_denied: u64,
    /// Blocked by the number's holder.
    pub blocked_by_user: u64,
    /// A region the company does not serve.
    pub country_not_allowed: u64,
}

impl RefusalCounts {
    /// Every refusal.
    pub fn total(&self) -> u64 {
        self.number_rate_limited
            + self.recently_denied
            + self.blocked_by_user
            + self.country_not_allowed
    }
}

#[derive(Debug, FromQueryResult)]
struct ByReason {
    reason: RefusalReason,
    refusals: i64,
}

/// `company_id`'s refusals in mode `livemode` counted in the hours that start in
/// `[after, before)`.
pub async fn counts(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    after: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Result<RefusalCounts, DbErr> {
    let rows = ByReason::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT reason, CAST(SUM(refusals) AS BIGINT) AS refusals FROM initiation_refusals \
         WHERE company_id = $1 AND livemode = $2 AND hour >= $3 AND hour < $4 \
         GROUP BY reason",
        [
            company_id.into(),
            livemode.into(),
            hour_of(after).into(),
            before.into(),
        ],
    ))
    .all(db)
    .await?;
    let mut counts = RefusalCounts::default();
    for row in rows {
        let n = u64::try_from(row.refusals).unwrap_or(0);
        match row.reason {
            RefusalReason::NumberRateLimited => counts.number_rate_limited = n,
            RefusalReason::RecentlyDenied => counts.recently_denied = n,
            RefusalReason::BlockedByUser => counts.blocked_by_user = n,
            RefusalReason::CountryNotAllowed => counts.country_not_allowed = n,
        }
    }
    Ok(counts)
}

/// Deletes company `$1`'s counters of hours before `$2` (the retention sweep keeps the
/// summary's longest window, 90 days).
pub const EXPIRED_SQL: &str = "DELETE FROM initiation_refusals WHERE company_id = $1 AND hour < $2";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_counts_in_its_hour() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T15:42:17.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(hour_of(at).to_rfc3339(), "2026-12-07T15:00:00+00:00");
        let counts = RefusalCounts {
            number_rate_limited: 1,
            recently_denied: 2,
            blocked_by_user: 3,
            country_not_allowed: 4,
        };
        assert_eq!(counts.total(), 10);
    }
}
