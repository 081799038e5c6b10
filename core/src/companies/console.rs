//! The company console's credentials (PRODUCT.md, "Company console"): single-use sign-in links
//! and the browser sessions they open.
//!
//! Only SHA-256 digests of the link token and of the session cookie are stored, so a copy of
//! the database signs nobody in. A link is consumed by one conditional `UPDATE` (the second
//! opening finds `used_at` set); a session is bounded by an absolute lifetime and an idle
//! timeout, both checked on every request on every node (the row is the only state, so any
//! node serves any browser).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use sha2::{Digest, Sha256};

use super::secrets::{RandomError, new_console_token};
use crate::storage::sql;

/// How long a sign-in link can be opened.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// A session's longest life.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);
/// `last_seen_at` is written at most this often per session (one write a minute, not one per
/// page).
const SEEN_GRANULARITY: chrono::Duration = chrono::Duration::seconds(60);

/// Why the console refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn digest(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A new sign-in link's token and when it stops working.
#[derive(Debug, Clone)]
pub struct SignInLink {
    /// The token, shown once in the link (`/console/sign-in?token=…`).
    pub token: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// Creates a single-use sign-in link for `company_id`, valid [`LINK_TTL`]. The company's
/// links and sessions that are already over are deleted on the way.
pub async fn create_link(
    db: &impl ConnectionTrait,
    company_id: &str,
) -> Result<SignInLink, ConsoleError> {
    let token = new_console_token()?;
    let now = sql::now();
    let expires_at = now + to_chrono(LINK_TTL);
    let backend = db.get_database_backend();
    for stale in [
        "DELETE FROM console_links WHERE company_id = $1 AND (expires_at <= $2 OR used_at IS NOT NULL)",
        "DELETE FROM console_sessions WHERE company_id = $1 AND expires_at <= $2",
    ] {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            stale,
            [company_id.into(), now.into()],
        ))
        .await?;
    }
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "INSERT INTO console_links (token_hash, company_id, created_at, expires_at) \
         VALUES ($1, $2, $3, $4)",
        [
            digest(&token).into(),
            company_id.into(),
            now.into(),
            expires_at.into(),
        ],
    ))
    .await?;
    Ok(SignInLink { token, expires_at })
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Whose console it is.
    pub company_id: String,
    /// The mode it shows and acts in (the switch).
    pub livemode: bool,
    /// The token every state-changing form must carry.
    pub csrf_token: String,
    /// When it ends regardless of use.
    pub expires_at: DateTime<Utc>,
}

/// A new session: the cookie's value (shown once to the browser) and the session.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The cookie's value.
    pub cookie: String,
    /// The session.
    pub session: ConsoleSession,
}

/// Consumes link `token` and opens a live-mode session of its company; `None` if the link is
/// unknown, used or expired (one answer for all three).
pub async fn sign_in(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<OpenedSession>, ConsoleError> {
    #[derive(FromQueryResult)]
    struct Link {
        company_id: String,
    }
    let now = sql::now();
    let backend = db.get_database_backend();
    // One statement consumes the link: of two openings at once, one finds it unused.
    let Some(link) = Link::find_by_statement(Statement::from_sql_and_values(
        backend,
        "UPDATE console_links SET used_at = $2 \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING company_id",
        [digest(token).into(), now.into()],
    ))
    .one(db)
    .await?
    else {
        return Ok(None);
    };
    let cookie = new_console_token()?;
    let session = ConsoleSession {
        company_id: link.company_id,
        livemode: true,
        csrf_token: new_console_token()?,
        expires_at: now + to_chrono(SESSION_MAX_AGE),
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "INSERT INTO console_sessions \
           (session_hash, company_id, livemode, csrf_token, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
        [
            digest(&cookie).into(),
            session.company_id.as_str().into(),
            session.livemode.into(),
            session.csrf_token.as_str().into(),
            now.into(),
            session.expires_at.into(),
        ],
    ))
    .await?;
    Ok(Some(OpenedSession { cookie, session }))
}

/// The live session of cookie `cookie`, its idle clock restarted; `None` if it never existed,
/// was signed out, is past its lifetime or has been idle too long.
pub async fn session(
    db: &impl ConnectionTrait,
    cookie: &str,
) -> Result<Option<ConsoleSession>, ConsoleError> {
    #[derive(FromQueryResult)]
    struct Row {
        company_id: String,
        livemode: bool,
        csrf_token: String,
        last_seen_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    }
    let now = sql::now();
    let hash = digest(cookie);
    let backend = db.get_database_backend();
    let Some(row) = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        "SELECT company_id, livemode, csrf_token, last_seen_at, expires_at \
         FROM console_sessions WHERE session_hash = $1",
        [hash.as_str().into()],
    ))
    .one(db)
    .await?
    else {
        return Ok(None);
    };
    if row.expires_at <= now || row.last_seen_at + to_chrono(SESSION_IDLE) <= now {
        end(db, cookie).await?;
        return Ok(None);
    }
    if now - row.last_seen_at >= SEEN_GRANULARITY {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE console_sessions SET last_seen_at = $2 WHERE session_hash = $1",
            [hash.into(), now.into()],
        ))
        .await?;
    }
    Ok(Some(ConsoleSession {
        company_id: row.company_id,
        livemode: row.livemode,
        csrf_token: row.csrf_token,
        expires_at: row.expires_at,
    }))
}

/// Switches session `cookie` to live (`true`) or test mode.
pub async fn set_mode(
    db: &impl ConnectionTrait,
    cookie: &str,
    livemode: bool,
) -> Result<(), ConsoleError> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE console_sessions SET livemode = $2 WHERE session_hash = $1",
        [digest(cookie).into(), livemode.into()],
    ))
    .await?;
    Ok(())
}

/// Ends session `cookie` (sign-out): its cookie opens nothing afterwards, on any node.
pub async fn end(db: &impl ConnectionTrait, cookie: &str) -> Result<(), ConsoleError> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM console_sessions WHERE session_hash = $1",
        [digest(cookie).into()],
    ))
    .await?;
    Ok(())
}

/// Deletes every link and session that is over (the retention sweep calls this); returns how
/// many rows went.
pub async fn delete_expired(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let now = sql::now();
    let backend = db.get_database_backend();
    let links = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "DELETE FROM console_links WHERE expires_at <= $1 OR used_at IS NOT NULL",
            [now.into()],
        ))
        .await?
        .rows_affected();
    let sessions = db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
            [now.into(), (now - to_chrono(SESSION_IDLE)).into()],
        ))
        .await?
        .rows_affected();
    let gone = links + sessions;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_as_their_sha256() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest("abc").len(), 64);
    }
}
