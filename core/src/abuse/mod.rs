//! Abuse controls (PRODUCT.md, "Abuse controls"): TrueNumber sends no SMS, so what it must stop
//! is people being asked again and again. A company's initiations are bounded per number
//! (the per-number limit, applied by the API with the other rate limits); refused for a number
//! whose holder said "not me" recently ([`cooldown`], written by the deny itself) or blocked the
//! company ([`blocks`]); and refused for numbers of regions the company does not serve
//! ([`countries`]). Every refusal is counted ([`refusals`]).

pub mod blocks;
pub mod countries;
pub mod refusals;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QuerySelect, Statement};
use sha2::{Digest, Sha256};
use truenumber_entities::company;
pub use truenumber_entities::initiation_refusal::RefusalReason;

use crate::{companies::policy::Overrides, phone::MobileNumber, storage::sql};

/// How long refusal counters are kept: the summary's longest window.
pub const REFUSALS_KEPT: chrono::Duration = chrono::Duration::days(90);

/// Deletes what the controls no longer need, company by company: cooldowns whose end has
/// passed (the company's own cooldown, else `default_cooldown`), and refusal counters older
/// than [`REFUSALS_KEPT`]. Returns how many rows went. (Blocks are deleted by the person who
/// made them, at once.)
pub async fn forget_served(
    db: &DatabaseConnection,
    default_cooldown: Duration,
) -> Result<u64, DbErr> {
    let companies: Vec<(String, Option<i32>)> = company::Entity::find()
        .select_only()
        .column(company::Column::CompanyId)
        .column(company::Column::DenyCooldownSeconds)
        .into_tuple()
        .all(db)
        .await?;
    let now = sql::now();
    let mut gone = 0;
    for (company_id, cooldown_seconds) in companies {
        let cooldown = Overrides {
            deny_cooldown_seconds: cooldown_seconds.and_then(|s| u32::try_from(s).ok()),
            ..Overrides::default()
        }
        .deny_cooldown_or(default_cooldown);
        let ended_before = chrono::Duration::from_std(cooldown)
            .ok()
            .and_then(|c| now.checked_sub_signed(c))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        for (statement, cutoff) in [
            (cooldown::EXPIRED_SQL, ended_before),
            (refusals::EXPIRED_SQL, now - REFUSALS_KEPT),
        ] {
            gone += db
                .execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    statement,
                    [company_id.clone().into(), cutoff.into()],
                ))
                .await?
                .rows_affected();
        }
    }
    Ok(gone)
}

/// The controls in force against one company, for its settings page: how many numbers have
/// blocked it, and how many of its numbers in one mode are within a deny cooldown (denied after
/// `cooldown_since`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InForce {
    /// Numbers whose holder blocked the company.
    pub blocks: u64,
    /// Numbers within a deny cooldown.
    pub cooldowns: u64,
}

/// See [`InForce`]. Plain SQL both engines run as written; no number leaves the database.
pub async fn in_force(
    db: &impl ConnectionTrait,
    company_id: &str,
    livemode: bool,
    cooldown_since: chrono::DateTime<chrono::Utc>,
) -> Result<InForce, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Counts {
        blocks: i64,
        cooldowns: i64,
    }
    let counts =
        <Counts as sea_orm::FromQueryResult>::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT (SELECT COUNT(*) FROM number_blocks WHERE company_id = $1) AS blocks, \
                (SELECT COUNT(*) FROM deny_cooldowns \
                 WHERE company_id = $1 AND livemode = $2 AND denied_at > $3) AS cooldowns",
            [company_id.into(), livemode.into(), cooldown_since.into()],
        ))
        .one(db)
        .await?;
    Ok(counts.map_or_else(InForce::default, |c| InForce {
        blocks: u64::try_from(c.blocks).unwrap_or(0),
        cooldowns: u64::try_from(c.cooldowns).unwrap_or(0),
    }))
}

/// The per-number limit's subject: the company and mode, and a digest of the number (the
/// limiter's store never holds a number).
pub fn number_subject(company_subject: &str, number: &MobileNumber) -> String {
    let digest = Sha256::digest(number.as_str().as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("{company_subject}:{hex}")
}

/// What the deny cooldown is made of: the statements that write it live with the deny
/// (`verification::transitions`), the one that reads it with initiate
/// (`verification::initiate`), and the one that deletes it with the retention sweep.
pub mod cooldown {
    /// Upserts the cooldown of a denied session: `$1` company, `$2` livemode, `$3` number,
    /// `$4` when. Plain SQL both engines run as written.
    pub const UPSERT_SQL: &str = "INSERT INTO deny_cooldowns \
           (company_id, livemode, mobile_number, denied_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (company_id, livemode, mobile_number) \
         DO UPDATE SET denied_at = excluded.denied_at";

    /// Deletes company `$1`'s cooldowns that ended before `$2` (the retention sweep).
    pub const EXPIRED_SQL: &str =
        "DELETE FROM deny_cooldowns WHERE company_id = $1 AND denied_at < $2";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::parse_mobile_number;

    #[test]
    fn the_subject_names_no_number() {
        let n = parse_mobile_number("+447400123456").unwrap();
        let s = number_subject("comp_a", &n);
        assert!(
            s.starts_with("comp_a:") && s.len() == "comp_a:".len() + 20,
            "{s}"
        );
        assert!(!s.contains("7400123456"));
        let other = parse_mobile_number("+447400123457").unwrap();
        assert_ne!(s, number_subject("comp_a", &other));
        assert_ne!(s, number_subject("comp_a:test", &n));
    }
}
