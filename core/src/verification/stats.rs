//! What the console's overview draws: a company's sessions of one mode per day by outcome,
//! and by country. (The window totals, conversion and median are [`super::listing::summarise`].)
//!
//! A pending session past its expiry counts as expired, as everywhere else.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::storage::sql::Twin;

/// One day's sessions (by the day they were created, UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// The day.
    pub day: NaiveDate,
    /// Verified.
    pub verified: u64,
    /// Denied ("not me").
    pub denied: u64,
    /// Failed.
    pub failed: u64,
    /// Expired (swept or past expiry).
    pub expired: u64,
    /// Still pending.
    pub pending: u64,
}

impl DayCounts {
    /// Every session of the day.
    pub const fn total(&self) -> u64 {
        self.verified + self.denied + self.failed + self.expired + self.pending
    }
}

/// The per-status sums of a group of sessions (`$4` is now). Shared by both statements.
macro_rules! outcome_sums {
    () => {
        "COALESCE(SUM(CASE WHEN status = 'verified' THEN 1 ELSE 0 END), 0) AS verified, \
         COALESCE(SUM(CASE WHEN status = 'denied' THEN 1 ELSE 0 END), 0) AS denied, \
         COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed, \
         COALESCE(SUM(CASE WHEN status = 'expired' OR (status = 'pending' AND expires_at <= $4) \
           THEN 1 ELSE 0 END), 0) AS expired, \
         COALESCE(SUM(CASE WHEN status = 'pending' AND expires_at > $4 THEN 1 ELSE 0 END), 0) \
           AS pending "
    };
}

/// Company `$1`'s sessions of mode `$5` created in `[$2, $3)`, per UTC day.
const DAILY: Twin = Twin {
    postgres: concat!(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, ",
        outcome_sums!(),
        "FROM verification_sessions \
         WHERE company_id = $1 AND livemode = $5 AND created_at >= $2 AND created_at < $3 \
         GROUP BY 1 ORDER BY 1"
    ),
    // Times are RFC 3339 UTC text: the day is the first ten characters.
    sqlite: concat!(
        "SELECT substr(created_at, 1, 10) AS day, ",
        outcome_sums!(),
        "FROM verification_sessions \
         WHERE company_id = $1 AND livemode = $5 AND created_at >= $2 AND created_at < $3 \
         GROUP BY 1 ORDER BY 1"
    ),
};

#[derive(FromQueryResult)]
struct DayRow {
    day: String,
    verified: i64,
    denied: i64,
    failed: i64,
    expired: i64,
    pending: i64,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Company `company_id`'s sessions of one mode created in `[from, to)`, one entry per UTC day
/// from `from`'s day to `to`'s (days without sessions are zeros, so a chart has no gaps).
pub async fn daily(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DayCounts>, DbErr> {
    let rows = DayRow::find_by_statement(DAILY.statement(
        db.get_database_backend(),
        [
            company_id.into(),
            from.into(),
            to.into(),
            crate::storage::sql::now().into(),
            livemode.into(),
        ],
    ))
    .all(db)
    .await?;
    let mut by_day: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
    let (mut day, last) = (from.date_naive(), to.date_naive());
    while day <= last {
        by_day.insert(
            day,
            DayCounts {
                day,
                ..DayCounts::default()
            },
        );
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    for row in rows {
        let Ok(day) = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d") else {
            continue;
        };
        by_day.insert(
            day,
            DayCounts {
                day,
                verified: count(row.verified),
                denied: count(row.denied),
                failed: count(row.failed),
                expired: count(row.expired),
                pending: count(row.pending),
            },
        );
    }
    Ok(by_day.into_values().collect())
}

/// One country's sessions in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCounts {
    /// The number's region (ISO 3166-1 alpha-2, libphonenumber's), `"ZZ"` if unknown.
    pub region: String,
    /// Sessions.
    pub total: u64,
    /// Of which verified.
    pub verified: u64,
    /// Of which finished (not pending): conversion is `verified / finished`.
    pub finished: u64,
}

/// The most distinct number prefixes a breakdown reads (the largest groups first); far more
/// than the regions that exist, so only a flood of made-up prefixes is cut short.
const MAX_PREFIXES: i64 = 5_000;

/// Company `$1`'s sessions of mode `$5` created in `[$2, $3)`, grouped by the first seven
/// characters of the number (`+` and six digits: enough to tell the NANP's regions apart by
/// area code, and Jersey, Guernsey and the Isle of Man from the UK), each with one sample
/// number whose region names the group. Plain SQL both engines run as written.
const BY_PREFIX_SQL: &str = concat!(
    "SELECT MIN(mobile_number) AS sample, COUNT(*) AS total, ",
    outcome_sums!(),
    "FROM verification_sessions \
     WHERE company_id = $1 AND livemode = $5 AND created_at >= $2 AND created_at < $3 \
     GROUP BY substr(mobile_number, 1, 7) ORDER BY 2 DESC LIMIT $6"
);

/// Company `company_id`'s sessions of one mode created in `[from, to)` by the region of their
/// number, the largest first. Numbers are never returned, only regions.
pub async fn by_country(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CountryCounts>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        sample: String,
        total: i64,
        verified: i64,
        pending: i64,
    }
    let rows = Row::find_by_statement(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        BY_PREFIX_SQL,
        [
            company_id.into(),
            from.into(),
            to.into(),
            crate::storage::sql::now().into(),
            livemode.into(),
            MAX_PREFIXES.into(),
        ],
    ))
    .all(db)
    .await?;
    let mut by_region: BTreeMap<&'static str, CountryCounts> = BTreeMap::new();
    for row in rows {
        let region = crate::phone::parse_mobile_number(&row.sample)
            .map(|n| n.region())
            .unwrap_or("ZZ");
        let entry = by_region.entry(region).or_insert_with(|| CountryCounts {
            region: region.to_owned(),
            total: 0,
            verified: 0,
            finished: 0,
        });
        entry.total += count(row.total);
        entry.verified += count(row.verified);
        entry.finished += count(row.total).saturating_sub(count(row.pending));
    }
    let mut out: Vec<CountryCounts> = by_region.into_values().collect();
    out.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.region.cmp(&b.region)));
    Ok(out)
}
