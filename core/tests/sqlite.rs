//! The data layer on SQLite (standalone mode): migrations and every repository function,
//! each test on a fresh database file in the system's temp directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::PathBuf, time::Duration};

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, FromQueryResult, Statement,
};
use truenumber_core::{
    companies::api_keys::{ApiKeyAuthenticator, AuthError},
    companies::app_tokens::{NumberBinding, TokenBinding},
    companies::{self, CompanyError},
    phone::{MobileNumber, parse_mobile_number},
    storage::db,
    storage::sql,
    verification::{self, SessionStatus, Submission, VerificationError},
    webhooks::deliveries::{self, AttemptRecord, DeliveryStatus, NextStep},
};
use truenumber_entities::{
    verification_event, verification_event::EventStatus, verification_session, webhook_attempt,
};
use truenumber_migration::{Migrator, MigratorTrait};

const NUMBER: &str = "+447911123456";
const OTHER_NUMBER: &str = "+447912345678";
const TTL: Duration = Duration::from_secs(600);

/// A database file that is deleted (with its WAL files) when the test ends.
struct TestDb {
    db: DatabaseConnection,
    path: PathBuf,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn fresh_db() -> TestDb {
    let path = std::env::temp_dir().join(format!("truenumber-test-{}.db", uuid::Uuid::new_v4()));
    let db = db::connect_sqlite(&path, 4).await.unwrap();
    db::migrate_sqlite(&db).await.unwrap();
    TestDb { db, path }
}

/// A live session request with no number matching.
fn live<'a>(
    company_id: &'a str,
    request_id: &'a str,
    mobile_number: &'a truenumber_core::phone::MobileNumber,
) -> verification::NewSession<'a> {
    verification::NewSession {
        company_id,
        livemode: true,
        request_id,
        mobile_number,
        number_matching: false,
        deny_cooldown: Duration::from_secs(86_400),
    }
}

fn number(n: &str) -> MobileNumber {
    parse_mobile_number(n).unwrap()
}

async fn company(db: &DatabaseConnection, id: &str) -> String {
    let created = companies::create_company(db, id, &format!("{id} Ltd"), None)
        .await
        .unwrap();
    created.api_key.expose().to_owned()
}

async fn scalar_string(db: &DatabaseConnection, sql: &str) -> String {
    #[derive(FromQueryResult)]
    struct Row {
        v: String,
    }
    Row::find_by_statement(Statement::from_string(DbBackend::Sqlite, sql))
        .one(db)
        .await
        .unwrap()
        .unwrap()
        .v
}

#[tokio::test]
async fn migrations_apply_revert_and_reapply_with_the_pragmas_set() {
    let t = fresh_db().await;
    assert_eq!(t.db.get_database_backend(), DbBackend::Sqlite);
    assert_eq!(
        truenumber_migration::SQLITE_NOW_DEFAULT,
        sql::SQLITE_NOW_DEFAULT
    );
    assert_eq!(
        scalar_string(&t.db, "SELECT journal_mode AS v FROM pragma_journal_mode").await,
        "wal"
    );
    assert_eq!(
        scalar_string(
            &t.db,
            "SELECT CAST(foreign_keys AS TEXT) AS v FROM pragma_foreign_keys"
        )
        .await,
        "1"
    );
    // synchronous NORMAL is 1.
    assert_eq!(
        scalar_string(
            &t.db,
            "SELECT CAST(synchronous AS TEXT) AS v FROM pragma_synchronous"
        )
        .await,
        "1"
    );
    let tables = scalar_string(
        &t.db,
        "SELECT group_concat(name, ',') AS v FROM \
         (SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
          ORDER BY name)",
    )
    .await;
    assert_eq!(
        tables,
        "api_keys,companies,console_links,console_sessions,deny_cooldowns,initiation_refusals,number_blocks,seaql_migrations,\
         verification_events,verification_sessions,webhook_attempts,webhook_deliveries"
    );
    let indexes = scalar_string(
        &t.db,
        "SELECT group_concat(name, ',') AS v FROM \
         (SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' \
          ORDER BY name)",
    )
    .await;
    assert_eq!(
        indexes,
        "api_keys_company_id_idx,console_links_expires_at_idx,console_sessions_expires_at_idx,\
         deny_cooldowns_denied_at_idx,verification_events_company_unbound_idx,\
         verification_events_one_per_session,\
         verification_events_unpublished_idx,verification_sessions_company_completed_idx,\
         verification_sessions_company_created_idx,verification_sessions_open_expiry_idx,\
         verification_sessions_open_number_idx,verification_sessions_request_company_mode_key,\
         webhook_deliveries_company_idx,\
         webhook_deliveries_overdue_idx"
    );
    db::ping(&t.db).await.unwrap();
    // Applying again is a no-op; every DOWN twin runs, and UP again.
    db::migrate_sqlite(&t.db).await.unwrap();
    Migrator::reset(&t.db).await.unwrap();
    assert_eq!(
        scalar_string(
            &t.db,
            "SELECT CAST(count(*) AS TEXT) AS v FROM sqlite_master \
             WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
        )
        .await,
        "0"
    );
    db::migrate_sqlite(&t.db).await.unwrap();
    assert_eq!(
        Migrator::get_pending_migrations(&t.db).await.unwrap().len(),
        0
    );
}

#[tokio::test]
async fn the_schema_enforces_its_checks_and_references() {
    let t = fresh_db().await;
    // A session of an unknown company: foreign key.
    let orphan =
        t.db.execute_unprepared(
            "INSERT INTO verification_sessions \
             (verification_id, mobile_number, company_id, request_id, expires_at) \
             VALUES ('ver_x', '+1', 'nobody', 'r', '2030-01-01T00:00:00+00:00')",
        )
        .await;
    assert!(orphan.is_err(), "{orphan:?}");
    company(&t.db, "acme").await;
    // A status outside the CHECK.
    let bad =
        t.db.execute_unprepared(
            "INSERT INTO verification_sessions \
             (verification_id, mobile_number, company_id, request_id, status, expires_at) \
             VALUES ('ver_x', '+1', 'acme', 'r', 'weird', '2030-01-01T00:00:00+00:00')",
        )
        .await;
    assert!(bad.is_err(), "{bad:?}");
    // Terminal without completed_at: the open-iff-pending CHECK of migration 3.
    let open_terminal =
        t.db.execute_unprepared(
            "INSERT INTO verification_sessions \
             (verification_id, mobile_number, company_id, request_id, status, expires_at) \
             VALUES ('ver_x', '+1', 'acme', 'r', 'verified', '2030-01-01T00:00:00+00:00')",
        )
        .await;
    assert!(open_terminal.is_err(), "{open_terminal:?}");
    // Defaults write RFC 3339 UTC text and a 16-byte id.
    t.db.execute_unprepared(
        "INSERT INTO verification_sessions \
         (verification_id, mobile_number, company_id, request_id, expires_at) \
         VALUES ('ver_ok', '+1', 'acme', 'r', '2030-01-01T00:00:00+00:00')",
    )
    .await
    .unwrap();
    let created = scalar_string(
        &t.db,
        "SELECT created_at || '|' || length(id) || '|' || typeof(id) AS v \
         FROM verification_sessions WHERE verification_id = 'ver_ok'",
    )
    .await;
    let (at, rest) = created.split_once('|').unwrap();
    assert_eq!(rest, "16|blob");
    let parsed = chrono::DateTime::parse_from_rfc3339(at).unwrap();
    assert!(
        (Utc::now() - parsed.to_utc()).num_seconds().abs() < 60,
        "{at}"
    );
    assert!(at.ends_with("+00:00"), "{at}");
}

#[tokio::test]
async fn companies_keys_and_authentication() {
    let t = fresh_db().await;
    let key = company(&t.db, "acme").await;
    assert!(matches!(
        companies::create_company(&t.db, "acme", "Again", None).await,
        Err(CompanyError::AlreadyExists(id)) if id == "acme"
    ));
    let found = companies::find_company(&t.db, "acme")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.name, "acme Ltd");
    assert!(found.is_active);
    assert!(found.webhook_secret.starts_with("whsec_"));
    assert!(
        companies::find_company(&t.db, "nope")
            .await
            .unwrap()
            .is_none()
    );

    let auth = ApiKeyAuthenticator::new(t.db.clone(), Duration::ZERO, Default::default());
    let who = auth.authenticate(&key).await.unwrap();
    assert_eq!(who.company_id, "acme");
    assert!(who.is_active);
    assert_eq!(who.overrides.initiate_per_hour, None);
    assert!(matches!(
        auth.authenticate("tn_live_nope_nope").await,
        Err(AuthError::InvalidKey)
    ));
    // A known key id with a wrong secret.
    let swap = if key.ends_with('A') { "B" } else { "A" };
    let wrong = format!("{}{swap}", &key[..key.len() - 1]);
    assert!(matches!(
        auth.authenticate(&wrong).await,
        Err(AuthError::InvalidKey)
    ));

    companies::set_webhook(&t.db, "acme", Some("https://example.com/hook"))
        .await
        .unwrap();
    companies::set_rate_limits(&t.db, "acme", Some(7), Some(9))
        .await
        .unwrap();
    assert!(matches!(
        companies::set_rate_limits(&t.db, "nope", Some(7), None).await,
        Err(CompanyError::NotFound(_))
    ));
    let who = auth.authenticate(&key).await.unwrap();
    assert_eq!(who.overrides.initiate_per_hour, Some(7));
    assert_eq!(who.overrides.status_per_hour, Some(9));

    let (new_key, new_id) = companies::rotate_key(&t.db, "acme", false).await.unwrap();
    assert_eq!(
        auth.authenticate(new_key.expose()).await.unwrap().key_id,
        new_id
    );
    assert!(matches!(
        companies::rotate_key(&t.db, "nope", false).await,
        Err(CompanyError::NotFound(_))
    ));
    companies::revoke_key(&t.db, "acme", &new_id).await.unwrap();
    // Revoking again is fine; an unknown key is not.
    companies::revoke_key(&t.db, "acme", &new_id).await.unwrap();
    assert!(matches!(
        companies::revoke_key(&t.db, "acme", "ffffffffffffffff").await,
        Err(CompanyError::KeyNotFound(_))
    ));
    assert!(matches!(
        auth.authenticate(new_key.expose()).await,
        Err(AuthError::InvalidKey)
    ));
    assert!(auth.authenticate(&key).await.is_ok());

    companies::set_active(&t.db, "acme", false).await.unwrap();
    assert!(matches!(
        auth.authenticate(&key).await,
        Err(AuthError::CompanyInactive)
    ));
    assert!(matches!(
        companies::set_active(&t.db, "nope", false).await,
        Err(CompanyError::NotFound(_))
    ));

    company(&t.db, "beta").await;
    let (_, rotated_id) = companies::rotate_key(&t.db, "beta", true).await.unwrap();
    let list = companies::list_companies(&t.db).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|c| c.company_id.as_str()).collect();
    assert_eq!(ids, ["acme", "beta"]);
    let acme = &list[0];
    assert!(!acme.is_active);
    assert_eq!(
        acme.webhook_url.as_deref(),
        Some("https://example.com/hook")
    );
    assert_eq!(acme.rate_limit_initiate_per_hour, Some(7));
    // The live and test keys of `company create`, and the rotated (then revoked) one.
    assert_eq!(acme.api_keys.len(), 3);
    assert_eq!(
        acme.api_keys
            .iter()
            .filter(|k| k.revoked_at.is_some())
            .count(),
        1
    );
    let beta = &list[1];
    // rotate with revoke_existing: the first keys revoked, the new one not.
    assert_eq!(beta.api_keys.len(), 3);
    for k in &beta.api_keys {
        assert_eq!(k.revoked_at.is_none(), k.key_id == rotated_id, "{k:?}");
    }
    companies::set_webhook(&t.db, "acme", None).await.unwrap();
    assert_eq!(
        companies::find_company(&t.db, "acme")
            .await
            .unwrap()
            .unwrap()
            .webhook_url,
        None
    );
}

#[tokio::test]
async fn initiate_replays_and_refuses_a_reused_request_id() {
    let t = fresh_db().await;
    company(&t.db, "acme").await;
    company(&t.db, "beta").await;
    let before = Utc::now();
    let first = verification::initiate(&t.db, live("acme", "req-1", &number(NUMBER)), TTL)
        .await
        .unwrap();
    assert!(!first.replayed);
    let s = &first.session;
    assert!(s.verification_id.starts_with("ver_"));
    assert_eq!(s.mobile_number, NUMBER);
    assert_eq!(s.company_id, "acme");
    assert_eq!(s.request_id, "req-1");
    assert_eq!(s.stored_status, SessionStatus::Pending);
    assert!(s.created_at >= before && s.created_at <= Utc::now());
    assert_eq!(s.expires_at - s.created_at, chrono::Duration::seconds(600));
    assert_eq!(s.verified_at, None);
    // Row ids are v4 UUIDs, as PostgreSQL's gen_random_uuid() makes them.
    let row = verification_session::Entity::find()
        .one(&t.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.id.get_version_num(), 4);

    let again = verification::initiate(&t.db, live("acme", "req-1", &number(NUMBER)), TTL)
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.session, first.session);

    assert!(matches!(
        verification::initiate(&t.db, live("acme", "req-1", &number(OTHER_NUMBER)), TTL).await,
        Err(VerificationError::DuplicateRequest)
    ));
    // The same request id is another company's own.
    let beta = verification::initiate(&t.db, live("beta", "req-1", &number(OTHER_NUMBER)), TTL)
        .await
        .unwrap();
    assert!(!beta.replayed);
    assert_ne!(beta.session.verification_id, s.verification_id);

    let read = verification::find_for_company(&t.db, "acme", true, &s.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&read, s);
    assert_eq!(
        verification::find_for_company(&t.db, "beta", true, &s.verification_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        verification::find_for_company(&t.db, "acme", true, "ver_nope")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        verification::find_for_company(&t.db, "acme", true, &"x".repeat(65))
            .await
            .unwrap(),
        None
    );
}

/// An app token bound to [`NUMBER`], its number proved at [`PROVED_AT`].
static BOUND: std::sync::LazyLock<TokenBinding> =
    std::sync::LazyLock::new(|| TokenBinding::Bound {
        number: NUMBER.to_owned(),
        phone_verified_at: chrono::DateTime::from_timestamp(PROVED_AT, 0),
    });
const PROVED_AT: i64 = 1_796_000_000;

fn submission<'a>(id: &'a str, confirmed: &'a MobileNumber) -> Submission<'a> {
    Submission {
        match_code: None,
        verification_id: id,
        confirmed_number: confirmed,
        binding: &BOUND,
        app_user_id: "user-1",
    }
}

async fn event_row(db: &DatabaseConnection, id: &str) -> verification_event::Model {
    verification_event::Entity::find_by_id(id.to_owned())
        .one(db)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn submit_verifies_once_and_writes_its_event() {
    let t = fresh_db().await;
    company(&t.db, "acme").await;
    let s = verification::initiate(&t.db, live("acme", "req-1", &number(NUMBER)), TTL)
        .await
        .unwrap()
        .session;
    let confirmed = number(NUMBER);
    let done = verification::submit(&t.db, submission(&s.verification_id, &confirmed))
        .await
        .unwrap();
    let v = &done.session;
    assert_eq!(v.stored_status, SessionStatus::Verified);
    assert_eq!(v.app_user_id.as_deref(), Some("user-1"));
    let verified_at = v.verified_at.unwrap();
    assert_eq!(v.completed_at, Some(verified_at));
    assert!((Utc::now() - verified_at).num_seconds() < 60);

    // evt_ + 32 lowercase hex digits.
    let hex = done.event_id.strip_prefix("evt_").unwrap();
    assert_eq!(hex.len(), 32);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );

    let ev = event_row(&t.db, &done.event_id).await;
    assert_eq!(ev.event_type, "verification.completed");
    assert_eq!(
        ev.verification_id.as_deref(),
        Some(s.verification_id.as_str())
    );
    assert_eq!(ev.company_id, "acme");
    assert_eq!(ev.status, Some(EventStatus::Verified));
    assert_eq!(ev.published_at, None);
    assert_eq!(ev.relay_claimed_until, None);
    let ms = verified_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    // The body is not stored with the event; it is rendered from the event and its session
    // when delivered.
    assert_eq!(ev.payload, None);
    let target = deliveries::event_target(&t.db, &done.event_id)
        .await
        .unwrap()
        .unwrap();
    let body = target.body().unwrap().render();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({
            "event": "verification.completed",
            "verificationId": s.verification_id,
            "status": "verified",
            "livemode": true,
            "mobileNumber": NUMBER,
            "verifiedAt": ms,
            "companyId": "acme",
            "requestId": "req-1",
            "numberBinding": "app_token",
            "phoneVerifiedAt": "2026-11-30T00:53:20.000Z",
        })
    );
    assert_eq!(v.number_binding, Some(NumberBinding::AppToken));
    assert_eq!(
        v.phone_verified_at,
        chrono::DateTime::from_timestamp(PROVED_AT, 0)
    );
    // Byte for byte what PostgreSQL's `jsonb::text` gave when the body was stored: its key
    // order and separators, so receivers see the same bytes as before.
    assert_eq!(
        body,
        format!(
            "{{\"event\": \"verification.completed\", \"status\": \"verified\", \
             \"livemode\": true, \"companyId\": \"acme\", \"requestId\": \"req-1\", \"verifiedAt\": \"{ms}\", \
             \"mobileNumber\": \"{NUMBER}\", \"numberBinding\": \"app_token\", \
             \"verificationId\": \"{}\", \"phoneVerifiedAt\": \"2026-11-30T00:53:20.000Z\"}}",
            s.verification_id
        )
    );
    assert_eq!(
        body,
        truenumber_core::webhooks::body::WebhookBody::Completed(v.terminal()).render()
    );
    assert_eq!(target.company_id, "acme");
    assert_eq!(target.webhook_url, None);
    assert!(target.webhook_secret.starts_with("whsec_"));

    // Once only.
    assert!(matches!(
        verification::submit(&t.db, submission(&s.verification_id, &confirmed)).await,
        Err(VerificationError::AlreadyCompleted(SessionStatus::Verified))
    ));
    assert!(matches!(
        verification::submit(&t.db, submission("ver_nope", &confirmed)).await,
        Err(VerificationError::SessionNotFound)
    ));
    let events = verification_event::Entity::find().all(&t.db).await.unwrap();
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn submit_fails_on_a_mismatch_and_refuses_expired_and_inactive() {
    let t = fresh_db().await;
    company(&t.db, "acme").await;
    let init = |req: &'static str, ttl: Duration| {
        let db = t.db.clone();
        async move {
            verification::initiate(&db, live("acme", req, &number(NUMBER)), ttl)
                .await
                .unwrap()
                .session
        }
    };

    // A different confirmed number: failed, with a failed event and no verifiedAt.
    let s = init("mismatch", TTL).await;
    let other = number(OTHER_NUMBER);
    let done = verification::submit(&t.db, submission(&s.verification_id, &other))
        .await
        .unwrap();
    assert_eq!(done.session.stored_status, SessionStatus::Failed);
    assert_eq!(done.session.verified_at, None);
    assert!(done.session.completed_at.is_some());
    let ev = event_row(&t.db, &done.event_id).await;
    assert_eq!(ev.status, Some(EventStatus::Failed));
    let body: serde_json::Value = serde_json::from_str(
        &deliveries::event_target(&t.db, &done.event_id)
            .await
            .unwrap()
            .unwrap()
            .body()
            .unwrap()
            .render(),
    )
    .unwrap();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["verifiedAt"], serde_json::Value::Null);
    assert_eq!(body["mobileNumber"], NUMBER);
    assert!(matches!(
        verification::submit(&t.db, submission(&s.verification_id, &other)).await,
        Err(VerificationError::AlreadyCompleted(SessionStatus::Failed))
    ));

    // The right number but a token bound to another: not found, and the session untouched.
    let s = init("token", TTL).await;
    let confirmed = number(NUMBER);
    let other_token = TokenBinding::Bound {
        number: OTHER_NUMBER.to_owned(),
        phone_verified_at: None,
    };
    assert!(matches!(
        verification::submit(
            &t.db,
            Submission {
                binding: &other_token,
                ..submission(&s.verification_id, &confirmed)
            },
        )
        .await,
        Err(VerificationError::SessionNotFound)
    ));
    let read = verification::find_for_company(&t.db, "acme", true, &s.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.stored_status, SessionStatus::Pending);
    assert_eq!(read.number_binding, None);

    // Expired: nothing changes, no event.
    let s = init("expired", Duration::ZERO).await;
    assert!(matches!(
        verification::submit(&t.db, submission(&s.verification_id, &confirmed)).await,
        Err(VerificationError::SessionExpired)
    ));
    let read = verification::find_for_company(&t.db, "acme", true, &s.verification_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.stored_status, SessionStatus::Pending);
    assert_eq!(read.status_at(Utc::now()), SessionStatus::Expired);

    // Inactive company: refused, still pending; active again, it verifies.
    let s = init("inactive", TTL).await;
    companies::set_active(&t.db, "acme", false).await.unwrap();
    assert!(matches!(
        verification::submit(&t.db, submission(&s.verification_id, &confirmed)).await,
        Err(VerificationError::CompanyInactive)
    ));
    companies::set_active(&t.db, "acme", true).await.unwrap();
    let done = verification::submit(&t.db, submission(&s.verification_id, &confirmed))
        .await
        .unwrap();
    assert_eq!(done.session.stored_status, SessionStatus::Verified);

    let events = verification_event::Entity::find().all(&t.db).await.unwrap();
    assert_eq!(events.len(), 2, "mismatch, inactive-then-verified");
}

#[tokio::test]
async fn deliveries_record_retry_fail_reopen_and_are_taken_when_due() {
    let t = fresh_db().await;
    company(&t.db, "acme").await;
    company(&t.db, "beta").await;
    let s = verification::initiate(&t.db, live("acme", "req-1", &number(NUMBER)), TTL)
        .await
        .unwrap()
        .session;
    let confirmed = number(NUMBER);
    let event_id = verification::submit(&t.db, submission(&s.verification_id, &confirmed))
        .await
        .unwrap()
        .event_id;

    let d = deliveries::get_or_create(&t.db, &event_id, "acme", "https://a.example/h")
        .await
        .unwrap();
    assert_eq!(d.event_id, event_id);
    assert_eq!(d.company_id, "acme");
    assert_eq!(d.url, "https://a.example/h");
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!((d.attempts, d.round_start), (0, 0));
    assert_eq!(d.next_attempt_at, None);
    assert_eq!(d.id.get_version_num(), 4);
    // A redelivered message finds the same row.
    let same = deliveries::get_or_create(&t.db, &event_id, "acme", "https://other.example/")
        .await
        .unwrap();
    assert_eq!(same, d);

    // Attempt 1: a 500, retry in 30 s (the instant is decided in Rust and stored as is).
    let in_30s = chrono::SubsecRound::trunc_subsecs(Utc::now() + chrono::Duration::seconds(30), 3);
    let retry = AttemptRecord {
        attempt: 1,
        url: "https://a.example/h2".into(),
        status_code: Some(500),
        latency_ms: 12,
        error: Some("HTTP 500".into()),
        next: NextStep::RetryAt(in_30s),
    };
    deliveries::record_attempt(&t.db, d.id, &retry)
        .await
        .unwrap();
    // Recording the same attempt twice does not duplicate it.
    deliveries::record_attempt(&t.db, d.id, &retry)
        .await
        .unwrap();
    let d1 = deliveries::list(&t.db, "acme", None, 10).await.unwrap();
    assert_eq!(d1.len(), 1);
    let d1 = &d1[0];
    assert_eq!(d1.status, DeliveryStatus::Pending);
    assert_eq!(d1.attempts, 1);
    assert_eq!(d1.url, "https://a.example/h2");
    assert_eq!(d1.last_status_code, Some(500));
    assert_eq!(d1.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(d1.completed_at, None);
    assert_eq!(d1.next_attempt_at, Some(in_30s));

    // Not due yet, even with no grace.
    assert!(
        deliveries::take_due(&t.db, 0.0, Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Attempt 2 retries at once: due, and taken once for the lease.
    deliveries::record_attempt(
        &t.db,
        d.id,
        &AttemptRecord {
            attempt: 2,
            url: "https://a.example/h2".into(),
            status_code: None,
            latency_ms: 5000,
            error: Some("timed out".into()),
            next: NextStep::RetryAt(Utc::now()),
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A grace longer than the delay: not yet.
    assert!(
        deliveries::take_due(&t.db, 60.0, Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = deliveries::take_due(&t.db, 0.0, Duration::from_secs(120), 10)
        .await
        .unwrap();
    assert_eq!(taken, vec![(event_id.clone(), 3)]);
    let leased = deliveries::list(&t.db, "acme", None, 10).await.unwrap()[0]
        .next_attempt_at
        .unwrap();
    assert!(leased > Utc::now() + chrono::Duration::seconds(100));
    assert!(
        deliveries::take_overdue(&t.db, 0.0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Attempt 3 gives up.
    deliveries::record_attempt(
        &t.db,
        d.id,
        &AttemptRecord {
            attempt: 3,
            url: "https://a.example/h2".into(),
            status_code: Some(410),
            latency_ms: 7,
            error: None,
            next: NextStep::Failed,
        },
    )
    .await
    .unwrap();
    let failed = deliveries::list(&t.db, "acme", Some(DeliveryStatus::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 3);
    assert_eq!(failed[0].next_attempt_at, None);
    assert_eq!(failed[0].last_error, None);
    assert!(failed[0].completed_at.is_some());
    assert!(
        deliveries::list(&t.db, "acme", Some(DeliveryStatus::Pending), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        deliveries::list(&t.db, "beta", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let log = deliveries::attempts(&t.db, d.id).await.unwrap();
    for row in webhook_attempt::Entity::find().all(&t.db).await.unwrap() {
        assert_eq!(row.id.get_version_num(), 4);
    }
    let summary: Vec<(i32, Option<i32>, i32, Option<&str>)> = log
        .iter()
        .map(|a| (a.attempt, a.status_code, a.latency_ms, a.error.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(500), 12, Some("HTTP 500")),
            (2, None, 5000, Some("timed out")),
            (3, Some(410), 7, None),
        ]
    );
    assert!(
        log.windows(2)
            .all(|w| w[0].attempted_at <= w[1].attempted_at)
    );

    // Reopen: another company's or a wrong id reopens nothing; the right one restarts.
    assert!(
        deliveries::reopen_failed(&t.db, "beta", None)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        deliveries::reopen_failed(&t.db, "acme", Some(uuid::Uuid::new_v4()))
            .await
            .unwrap()
            .is_empty()
    );
    let reopened = deliveries::reopen_failed(&t.db, "acme", Some(d.id))
        .await
        .unwrap();
    assert_eq!(reopened, vec![(event_id.clone(), 4)]);
    let d4 = &deliveries::list(&t.db, "acme", None, 10).await.unwrap()[0];
    assert_eq!(d4.status, DeliveryStatus::Pending);
    assert_eq!((d4.attempts, d4.round_start), (3, 3));
    assert_eq!(d4.completed_at, None);
    assert!(d4.next_attempt_at.unwrap() <= Utc::now());
    // Pending now: nothing more to reopen.
    assert!(
        deliveries::reopen_failed(&t.db, "acme", None)
            .await
            .unwrap()
            .is_empty()
    );

    // Succeeded.
    deliveries::record_attempt(
        &t.db,
        d.id,
        &AttemptRecord {
            attempt: 4,
            url: "https://a.example/h2".into(),
            status_code: Some(204),
            latency_ms: 3,
            error: None,
            next: NextStep::Succeeded,
        },
    )
    .await
    .unwrap();
    let done = &deliveries::list(&t.db, "acme", Some(DeliveryStatus::Succeeded), 10)
        .await
        .unwrap()[0];
    assert_eq!(done.attempts, 4);
    assert_eq!(done.last_status_code, Some(204));
    assert!(done.completed_at.is_some());
    assert_eq!(deliveries::attempts(&t.db, d.id).await.unwrap().len(), 4);
}
