//! Statements that differ between the two engines, side by side.
//!
//! Production mode runs on PostgreSQL; standalone mode on SQLite. Queries that sea-orm and
//! sea-query build portably are written with them. Where one backend-specific statement is the
//! point (a state transition and its outbox row in one round trip, `SKIP LOCKED` claims), the
//! PostgreSQL statement and its SQLite counterpart are written as one [`Twin`], next to each
//! other, so a reader sees both and a change to one is made to the other.
//!
//! # SQLite conventions (standalone)
//! - **Time** is stored as RFC 3339 text in UTC, exactly as sqlx encodes a `DateTime<Utc>`
//!   (`2026-11-23T10:00:00.123456789+00:00`); such values order correctly as text. SQLite's
//!   own `datetime('now')` writes another format, so a SQLite statement never asks SQLite for
//!   the time: "now" and every instant derived from it (`now + ttl`) are bound from Rust
//!   ([`now`]). One process owns the database, so its clock is the only clock. Column
//!   defaults use [`SQLITE_NOW_DEFAULT`], which writes the same format.
//! - **UUIDs** are 16-byte blobs (sqlx's encoding); **booleans** 0/1; **JSON** is text.
//! - Parameters are `$1`, `$2`, … in both dialects (sqlx binds SQLite's `$N` by number).
//! - SQLite has no data-modifying CTEs: a PostgreSQL single statement becomes a short
//!   transaction whose first statement writes (so it takes the write lock at once and never
//!   has to upgrade a read lock, the one case SQLite's busy timeout cannot wait out).
//! - **Columns are named, never `*`** (in `SELECT` and `RETURNING`): SQLite expands `*` when
//!   it prepares a statement and again when it re-prepares it after any schema change (by
//!   this process or another, such as a newer release's `migrate`), whereas sqlx-sqlite keeps
//!   the column list of the first prepare and crashes its connection's worker thread when a
//!   row has more columns (issue 23). A named list has the same columns on every prepare. The
//!   lists of whole rows are [`SESSION_COLUMNS`] and [`DELIVERY_COLUMNS`].

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, Statement, Value};

/// Every column of `verification_sessions`, as one literal (for `concat!`); equal to the
/// entity's columns (a test checks it).
macro_rules! session_columns {
    () => {
        "id, verification_id, mobile_number, company_id, request_id, status, app_user_id, \
         created_at, verified_at, completed_at, expires_at, livemode, match_code, number_binding, \
         phone_verified_at"
    };
}
pub(crate) use session_columns;

/// Every column of `webhook_deliveries`, as one literal (for `concat!`); equal to the entity's
/// columns (a test checks it).
macro_rules! delivery_columns {
    () => {
        "id, event_id, company_id, url, status, attempts, round_start, next_attempt_at, \
         last_status_code, last_error, created_at, updated_at, completed_at, livemode"
    };
}
pub(crate) use delivery_columns;

/// A whole `verification_sessions` row, column by column (see the module's conventions).
pub const SESSION_COLUMNS: &str = session_columns!();

/// A whole `webhook_deliveries` row, column by column (see the module's conventions).
pub const DELIVERY_COLUMNS: &str = delivery_columns!();

/// A column default in SQLite DDL that writes the current time in the format above.
pub const SQLITE_NOW_DEFAULT: &str = "(strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))";

/// One statement in both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Twin {
    /// PostgreSQL (production mode).
    pub postgres: &'static str,
    /// SQLite (standalone mode).
    pub sqlite: &'static str,
}

impl Twin {
    /// The statement for `backend` with its values.
    pub fn statement(
        &self,
        backend: DbBackend,
        values: impl IntoIterator<Item = Value>,
    ) -> Statement {
        match backend {
            DbBackend::Sqlite => Statement::from_sql_and_values(backend, self.sqlite, values),
            _ => Statement::from_sql_and_values(DbBackend::Postgres, self.postgres, values),
        }
    }
}

/// The current time, to bind where a SQLite statement needs "now": in microseconds, the
/// precision of PostgreSQL's `timestamptz`, so both modes store and show the same instants.
pub fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

/// "Now" inside a statement built with sea-query: PostgreSQL's `now()` (the database's
/// clock, as its hand-written statements use), or on SQLite the current time bound from Rust
/// ([`now`]), never SQLite's own.
pub fn now_expr(backend: DbBackend) -> sea_orm::sea_query::Expr {
    match backend {
        DbBackend::Sqlite => sea_orm::sea_query::Expr::value(now()),
        _ => sea_orm::sea_query::Expr::cust("now()"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Timelike;
    use sea_orm::{IdenStatic, Iterable};

    fn names<C: Iterable + IdenStatic>() -> Vec<String> {
        C::iter().map(|c| c.as_str().to_owned()).collect()
    }

    fn listed(list: &str) -> Vec<String> {
        list.split(',').map(|c| c.trim().to_owned()).collect()
    }

    #[test]
    fn column_lists_name_every_column_of_their_entity() {
        use truenumber_entities::{verification_session, webhook_delivery};
        assert_eq!(
            listed(super::SESSION_COLUMNS),
            names::<verification_session::Column>()
        );
        assert_eq!(
            listed(super::DELIVERY_COLUMNS),
            names::<webhook_delivery::Column>()
        );
    }

    #[test]
    fn now_has_microsecond_precision_like_postgresql() {
        for _ in 0..100 {
            assert_eq!(super::now().nanosecond() % 1_000, 0);
        }
    }
}
