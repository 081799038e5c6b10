//! The sea-orm entities match the migrated tables column for column, and a status outside its
//! enum fails to decode (it is never read as `pending`).

use sea_orm::{
    ColumnTrait, ColumnType, DatabaseConnection, DbBackend, DbErr, EntityName, EntityTrait,
    FromQueryResult, IdenStatic, Iterable, Statement,
};
use truenumber_core::{config::Config, storage::db};
use truenumber_entities::{
    api_key, company, console_link, console_session, deny_cooldown, initiation_refusal,
    number_block, verification_event,
    verification_event::EventStatus,
    verification_session::{self, SessionStatus},
    webhook_attempt,
    webhook_delivery::{self, DeliveryStatus},
};

use crate::helpers::base_env;

async fn fresh_db() -> DatabaseConnection {
    let config = Config::from_map(&base_env()).unwrap();
    db::migrate(&config).await.unwrap();
    db::connect(&config).await.unwrap()
}

/// `(name, PostgreSQL type, nullable)` of each column, by name (a column added by a later
/// migration comes last in the table, wherever its entity lists it).
type Columns = Vec<(String, String, bool)>;

async fn table_columns(db: &DatabaseConnection, table: &str) -> Columns {
    #[derive(FromQueryResult)]
    struct Col {
        name: String,
        data_type: String,
        nullable: bool,
    }
    let mut columns = Col::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT column_name::text AS name, data_type::text AS data_type, \
                is_nullable::text = 'YES' AS nullable \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
        [table.into()],
    ))
    .all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|c| (c.name, c.data_type, c.nullable))
    .collect::<Columns>();
    columns.sort_unstable();
    columns
}

fn pg_type(t: &ColumnType) -> &'static str {
    match t {
        ColumnType::Uuid => "uuid",
        ColumnType::String(_) => "character varying",
        ColumnType::Text => "text",
        ColumnType::Integer => "integer",
        ColumnType::BigInteger => "bigint",
        ColumnType::Boolean => "boolean",
        ColumnType::TimestampWithTimeZone => "timestamp with time zone",
        ColumnType::JsonBinary => "jsonb",
        other => panic!("no PostgreSQL name for {other:?}"),
    }
}

fn entity_columns<E: EntityTrait>() -> Columns {
    let mut columns: Columns = E::Column::iter()
        .map(|c| {
            let def = c.def();
            (
                c.as_str().to_owned(),
                pg_type(def.get_column_type()).to_owned(),
                def.is_null(),
            )
        })
        .collect();
    columns.sort_unstable();
    columns
}

#[tokio::test]
async fn every_table_has_an_entity_that_matches_it() {
    let db = fresh_db().await;
    let entities: [(&str, Columns); 11] = [
        (
            company::Entity.table_name(),
            entity_columns::<company::Entity>(),
        ),
        (
            api_key::Entity.table_name(),
            entity_columns::<api_key::Entity>(),
        ),
        (
            verification_session::Entity.table_name(),
            entity_columns::<verification_session::Entity>(),
        ),
        (
            verification_event::Entity.table_name(),
            entity_columns::<verification_event::Entity>(),
        ),
        (
            webhook_delivery::Entity.table_name(),
            entity_columns::<webhook_delivery::Entity>(),
        ),
        (
            webhook_attempt::Entity.table_name(),
            entity_columns::<webhook_attempt::Entity>(),
        ),
        (
            number_block::Entity.table_name(),
            entity_columns::<number_block::Entity>(),
        ),
        (
            deny_cooldown::Entity.table_name(),
            entity_columns::<deny_cooldown::Entity>(),
        ),
        (
            initiation_refusal::Entity.table_name(),
            entity_columns::<initiation_refusal::Entity>(),
        ),
        (
            console_link::Entity.table_name(),
            entity_columns::<console_link::Entity>(),
        ),
        (
            console_session::Entity.table_name(),
            entity_columns::<console_session::Entity>(),
        ),
    ];
    for (table, columns) in &entities {
        assert_eq!(&table_columns(&db, table).await, columns, "{table}");
    }
    // And no table is left without one (the migrations' own bookkeeping aside).
    #[derive(FromQueryResult)]
    struct Table {
        name: String,
    }
    let mut tables: Vec<String> = Table::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT table_name::text AS name FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name <> 'seaql_migrations'",
    ))
    .all(&db)
    .await
    .unwrap()
    .into_iter()
    .map(|t| t.name)
    .collect();
    tables.sort_unstable();
    let mut with_entity: Vec<String> = entities.iter().map(|(t, _)| (*t).to_owned()).collect();
    with_entity.sort_unstable();
    assert_eq!(tables, with_entity);
}

#[derive(Debug, PartialEq, Eq, FromQueryResult)]
struct Statuses {
    session: SessionStatus,
    event: EventStatus,
    delivery: DeliveryStatus,
}

async fn decode(
    db: &DatabaseConnection,
    session: &str,
    event: &str,
    delivery: &str,
) -> Result<Option<Statuses>, DbErr> {
    Statuses::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT $1::varchar AS session, $2::varchar AS event, $3::varchar AS delivery",
        [session.into(), event.into(), delivery.into()],
    ))
    .one(db)
    .await
}

#[tokio::test]
async fn a_status_outside_its_enum_is_a_decode_error() {
    let db = fresh_db().await;
    assert_eq!(
        decode(&db, "expired", "failed", "succeeded").await.unwrap(),
        Some(Statuses {
            session: SessionStatus::Expired,
            event: EventStatus::Failed,
            delivery: DeliveryStatus::Succeeded,
        })
    );
    for (session, event, delivery) in [
        ("unknown", "verified", "pending"),
        ("", "verified", "pending"),
        ("Pending", "verified", "pending"),
        ("pending", "pending", "pending"),
        ("pending", "verified", "verified"),
    ] {
        let err = decode(&db, session, event, delivery)
            .await
            .expect_err("must not decode");
        assert!(err.to_string().contains("unexpected value"), "{err}");
    }
}
