//! The hot statements keep their intended index under the plans PostgreSQL caches.
//!
//! After five executions a prepared statement may switch to a generic plan, cached per
//! connection until the table's statistics change. On a small table, or one without
//! statistics (a fresh database; autovacuum lagging or off, as on the development machine),
//! a wrong choice there is kept while the table grows: the status lookup once scanned a
//! company's every session through the idempotency key. Migration 3 leaves each point lookup
//! one usable index; this test EXPLAINs the statements the code runs (their SQL is exported for
//! this), with generic plans forced, at several table sizes and without ANALYZE.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use truenumber_core::{
    config::Config,
    storage::db,
    verification,
    verification::{expiry, retention},
    webhooks::deliveries,
};

use crate::helpers::base_env;

/// A migrated database of its own, with the company `plans`.
async fn fresh_db() -> DatabaseConnection {
    let config = Config::from_map(&base_env()).unwrap();
    db::migrate(&config).await.unwrap();
    let db = db::connect(&config).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO companies (company_id, name, webhook_secret) VALUES ('plans', 'Plans', 'whsec_x')",
    )
    .await
    .unwrap();
    db
}

/// Adds `n` sessions (half of them completed), events and deliveries for one company.
async fn grow(db: &DatabaseConnection, from: usize, to: usize) {
    db.execute_unprepared(&format!(
        "INSERT INTO verification_sessions \
           (verification_id, mobile_number, company_id, request_id, expires_at, status, completed_at) \
         SELECT 'ver_' || g, '+447911123456', 'plans', 'req_' || g, now() + interval '10 minutes', \
           CASE WHEN g % 2 = 0 THEN 'verified' ELSE 'pending' END, \
           CASE WHEN g % 2 = 0 THEN now() END \
         FROM generate_series({from}, {to}) g WHERE {to} >= {from};
         INSERT INTO verification_events (id, event_type, verification_id, company_id, status, payload) \
         SELECT 'evt_' || g, 'verification.completed', 'ver_' || g, 'plans', 'verified', '{{}}' \
         FROM generate_series({from}, {to}) g WHERE {to} >= {from} AND g % 2 = 0;
         INSERT INTO webhook_deliveries (event_id, company_id, url) \
         SELECT 'evt_' || g, 'plans', 'https://example.com/hook' \
         FROM generate_series({from}, {to}) g WHERE {to} >= {from} AND g % 2 = 0;"
    ))
    .await
    .unwrap();
}

/// The generic plan of `sql` executed with `args` (SQL literals), as text.
async fn generic_plan(db: &DatabaseConnection, sql: &str, args: &str) -> String {
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    txn.execute_unprepared(&format!("PREPARE hot AS {sql}"))
        .await
        .unwrap();
    let rows = txn
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("EXPLAIN (COSTS OFF) EXECUTE hot({args})"),
        ))
        .await
        .unwrap();
    // Rolling back also forgets the prepared statement's effects; DEALLOCATE forgets it.
    txn.execute_unprepared("DEALLOCATE hot").await.unwrap();
    txn.rollback().await.unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_uses(plan: &str, what: &str, index: &str, never: &[&str], rows: usize) {
    assert!(
        plan.contains(index),
        "{what} at {rows} rows should use {index}:\n{plan}"
    );
    for other in never {
        assert!(
            !plan.contains(other),
            "{what} at {rows} rows must not use {other}:\n{plan}"
        );
    }
}

#[tokio::test]
async fn point_lookups_use_their_unique_index_at_every_table_size() {
    let db = fresh_db().await;
    let mut have = 0;
    for rows in [0, 3, 40, 400, 4000] {
        grow(&db, have + 1, rows).await;
        have = rows;

        let plan = generic_plan(&db, verification::FIND_FOR_COMPANY_SQL, "'ver_1'").await;
        assert_uses(
            &plan,
            "status",
            "verification_sessions_verification_id_key",
            &[
                "request_company_mode_key",
                "open_expiry_idx",
                "company_created_idx",
                "Seq Scan",
            ],
            rows,
        );

        let plan = generic_plan(
            &db,
            &verification::SUBMIT_SQL,
            "'ver_1', 'user', '+447911123456', true, NULL, '+447911123456', 'app_token', NULL, NULL",
        )
        .await;
        assert_uses(
            &plan,
            "submit",
            "verification_sessions_verification_id_key",
            &[
                "open_expiry_idx",
                "open_number_idx",
                "request_company_mode_key",
                "Seq Scan on verification_sessions",
            ],
            rows,
        );

        // Deny with a number-bound token (and a block of the company), and a test completion
        // scoped to a company.
        for args in [
            "'ver_1', 'denied', 'user', true, NULL, '+447911123456', 'app_token', NULL, true",
            "'ver_1', 'verified', NULL, false, 'plans', NULL, NULL, NULL, false",
        ] {
            let plan = generic_plan(&db, &verification::DECIDE_SQL, args).await;
            assert_uses(
                &plan,
                "decide",
                "verification_sessions_verification_id_key",
                &[
                    "open_expiry_idx",
                    "open_number_idx",
                    "company_created_idx",
                    "Seq Scan on verification_sessions",
                ],
                rows,
            );
        }

        // The app's pending list: a range of the open live sessions of one number.
        let plan = generic_plan(
            &db,
            truenumber_core::verification::app_view::PENDING_FOR_NUMBER_SQL,
            "'+447911123456', now(), 20",
        )
        .await;
        assert_uses(
            &plan,
            "pending for a number",
            "verification_sessions_open_number_idx",
            &[
                "Seq Scan on verification_sessions",
                "Seq Scan on number_blocks",
            ],
            rows,
        );

        let plan = generic_plan(
            &db,
            verification::INITIATE_SQL,
            "'ver_new', '+447911123456', 'plans', 'req_new', 600, true, NULL, 86400",
        )
        .await;
        assert_uses(
            &plan,
            "initiate (idempotent read)",
            "verification_sessions_request_company_mode_key",
            &[
                "open_expiry_idx",
                "company_created_idx",
                "Seq Scan on verification_sessions",
                // The block and cooldown guards are primary-key probes.
                "Seq Scan on number_blocks",
                "Seq Scan on deny_cooldowns",
            ],
            rows,
        );

        let plan = generic_plan(&db, deliveries::FIND_BY_EVENT_SQL, "'evt_2'").await;
        assert_uses(
            &plan,
            "delivery lookup",
            "webhook_deliveries_event_company_key",
            &["webhook_deliveries_company_idx", "Seq Scan"],
            rows,
        );
        let plan = generic_plan(
            &db,
            deliveries::GET_OR_CREATE_SQL,
            "'evt_2', 'plans', 'https://example.com/hook'",
        )
        .await;
        assert_uses(
            &plan,
            "delivery get-or-create",
            "webhook_deliveries_event_company_key",
            &[
                "webhook_deliveries_company_idx",
                "Seq Scan on webhook_deliveries",
            ],
            rows,
        );
    }

    // A company's listing walks its own sessions newest first through the listing index, with
    // or without a cursor.
    for after in [
        None,
        Some(truenumber_core::webhooks::deliveries::PageAfter {
            created_at: chrono::Utc::now(),
            id: uuid::Uuid::nil(),
        }),
    ] {
        use sea_orm::QueryTrait;
        let stmt = truenumber_core::verification::listing::list_query(
            "plans",
            true,
            &Default::default(),
            21,
            after,
            chrono::Utc::now(),
        )
        .build(sea_orm::DbBackend::Postgres);
        let args: Vec<String> = stmt
            .values
            .iter()
            .flat_map(|v| v.0.iter())
            .map(|v| match v {
                sea_orm::Value::String(Some(s)) => format!("'{s}'"),
                sea_orm::Value::ChronoDateTimeUtc(Some(t)) => format!("'{}'", t.to_rfc3339()),
                sea_orm::Value::Uuid(Some(u)) => format!("'{u}'"),
                sea_orm::Value::BigUnsigned(Some(n)) => n.to_string(),
                sea_orm::Value::Bool(Some(b)) => b.to_string(),
                other => panic!("no literal for {other:?}"),
            })
            .collect();
        let plan = generic_plan(&db, &stmt.sql, &args.join(", ")).await;
        assert_uses(
            &plan,
            "verification listing",
            "verification_sessions_company_created_idx",
            &["Seq Scan on verification_sessions"],
            have,
        );
    }

    // The retention sweep reads a company's completed sessions oldest first through its own
    // index, never the whole table.
    let plan = generic_plan(
        &db,
        retention::RETENTION_DELETE_SQL,
        "'plans', now() - interval '1 day', 500",
    )
    .await;
    assert_uses(
        &plan,
        "retention sweep",
        "verification_sessions_company_completed_idx",
        &["Seq Scan on verification_sessions"],
        have,
    );

    // The sweep reads due sessions through the open-session index once there are enough rows
    // for an index to pay (a tiny table is read whole, which is as cheap).
    let plan = generic_plan(&db, &expiry::EXPIRE_DUE_SQL, "500").await;
    assert_uses(
        &plan,
        "expiry sweep",
        "verification_sessions_open_expiry_idx",
        &["request_company_mode_key"],
        have,
    );
}

#[tokio::test]
async fn open_sessions_are_exactly_the_pending_ones() {
    let db = fresh_db().await;
    // The sweeper's index is on `completed_at IS NULL`; the CHECK keeps that equal to pending.
    for (status, completed) in [
        ("pending", "now()"),
        ("verified", "NULL"),
        ("expired", "NULL"),
    ] {
        let err = db
            .execute_unprepared(&format!(
                "INSERT INTO verification_sessions \
                   (verification_id, mobile_number, company_id, request_id, expires_at, status, completed_at) \
                 VALUES ('ver_{status}', '+447911123456', 'plans', 'req_{status}', now(), '{status}', {completed})"
            ))
            .await
            .expect_err("the CHECK must refuse it");
        assert!(
            err.to_string()
                .contains("verification_sessions_open_iff_pending"),
            "{status}: {err}"
        );
    }
}
