//! Companies and their API keys: what the operator commands and authentication read and write.

pub mod api_keys;
pub mod app_tokens;
pub mod console;
pub mod policy;
pub mod secrets;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, SqlErr, TransactionTrait,
    sea_query::{Expr, Func},
};
use serde::Serialize;
use truenumber_entities::{
    api_key::{self, KeyMode},
    company,
};
use uuid::Uuid;

use self::{
    api_keys::{Scope, Scopes},
    secrets::KeyError,
};
use crate::{config::Secret, storage::sql};

/// Failure of a company operation.
#[derive(Debug, thiserror::Error)]
pub enum CompanyError {
    /// `company create` with an id already taken.
    #[error("company `{0}` already exists")]
    AlreadyExists(String),
    /// No such company.
    #[error("company `{0}` not found")]
    NotFound(String),
    /// No such key for this company.
    #[error("API key `{0}` not found for this company")]
    KeyNotFound(String),
    /// The key is revoked, so it cannot be rolled.
    #[error("API key `{0}` is revoked")]
    KeyRevoked(String),
    /// The company already holds [`MAX_USABLE_KEYS`] usable keys.
    #[error("the company already holds {MAX_USABLE_KEYS} usable API keys")]
    KeyBudgetReached,
    /// A value the operator gave is unusable; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// Key generation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Secret generation failed.
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

/// What `company create` hands out once.
#[derive(Debug)]
pub struct CreatedCompany {
    /// The stored row.
    pub company: company::Model,
    /// The first API key (shown once).
    pub api_key: Secret,
    /// The key's lookup id.
    pub key_lookup_id: String,
    /// The first test-mode key (shown once), also with both scopes.
    pub test_api_key: Secret,
}

/// A key as listed: never its hash or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySummary {
    /// Public lookup id (also the middle part of the key).
    pub key_id: String,
    /// Live or test.
    #[serde(serialize_with = "serialize_mode")]
    pub mode: KeyMode,
    /// What it may call.
    #[serde(serialize_with = "serialize_scopes")]
    pub scopes: Scopes,
    /// The company's name for it.
    pub label: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last used (moved at most once per minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if it was rolled.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeySummary {
    fn from(k: api_key::Model) -> Self {
        Self {
            key_id: k.lookup_id,
            mode: k.mode,
            scopes: Scopes {
                verifications: k.scope_verifications,
                management: k.scope_management,
            },
            label: k.label,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

fn serialize_mode<S: serde::Serializer>(mode: &KeyMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.as_str())
}

fn serialize_scopes<S: serde::Serializer>(scopes: &Scopes, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(scopes.list().into_iter().map(Scope::as_str))
}

/// What a new key is: its mode, scopes and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Live or test.
    pub mode: KeyMode,
    /// What it may call.
    pub scopes: Scopes,
    /// The company's name for it (1–255 visible characters).
    pub label: Option<String>,
}

impl KeySpec {
    /// A live key with both scopes and no label: what the operator commands issue.
    pub const LIVE_ALL: Self = Self {
        mode: KeyMode::Live,
        scopes: Scopes::ALL,
        label: None,
    };
    /// A test key with both scopes and no label: the second key `company create` issues.
    pub const TEST_ALL: Self = Self {
        mode: KeyMode::Test,
        scopes: Scopes::ALL,
        label: None,
    };
}

/// A key just made: the key itself (shown once) and its listing.
#[derive(Debug)]
pub struct IssuedKey {
    /// The whole key.
    pub key: Secret,
    /// As listed.
    pub summary: ApiKeySummary,
}

/// The longest a rolled key may keep working (7 days, as PRODUCT.md allows).
pub const MAX_ROLL_OVERLAP: std::time::Duration = std::time::Duration::from_secs(604_800);

/// A company as listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanySummary {
    /// Public id.
    pub company_id: String,
    /// Name.
    pub name: String,
    /// Webhook target.
    pub webhook_url: Option<String>,
    /// Active or not.
    pub is_active: bool,
    /// Per-company override of the initiate limit.
    pub rate_limit_initiate_per_hour: Option<i32>,
    /// Per-company override of the status limit.
    pub rate_limit_status_per_hour: Option<i32>,
    /// Per-company retention window in days (`None`: `DATA_RETENTION_DAYS`).
    pub data_retention_days: Option<i32>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Its keys.
    pub api_keys: Vec<ApiKeySummary>,
}

/// Checks a company id: 1–255 characters of letters, digits, `_`, `-`, `.`.
pub fn validate_company_id(id: &str) -> Result<(), CompanyError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CompanyError::Invalid(
            "company id must be 1-255 characters of letters, digits, `_`, `-` and `.`".into(),
        ))
    }
}

/// [`webhooks::target::validate_webhook_url`](crate::webhooks::target::validate_webhook_url)
/// as a company error.
fn webhook_url(raw: &str) -> Result<String, CompanyError> {
    crate::webhooks::target::validate_webhook_url(raw)
        .map_err(|refused| CompanyError::Invalid(refused.to_string()))
}

/// An update of company `company_id` that also sets `updated_at`.
fn update_company(
    db: &impl ConnectionTrait,
    company_id: &str,
) -> sea_orm::UpdateMany<company::Entity> {
    company::Entity::update_many()
        .col_expr(
            company::Column::UpdatedAt,
            sql::now_expr(db.get_database_backend()),
        )
        .filter(company::Column::CompanyId.eq(company_id))
}

fn not_found_if_zero(rows: u64, company_id: &str) -> Result<(), CompanyError> {
    if rows == 0 {
        Err(CompanyError::NotFound(company_id.to_owned()))
    } else {
        Ok(())
    }
}

/// Creates a company with its first API keys (one live, one test) and a webhook secret.
pub async fn create_company(
    db: &DatabaseConnection,
    company_id: &str,
    name: &str,
    webhook_url: Option<&str>,
) -> Result<CreatedCompany, CompanyError> {
    validate_company_id(company_id)?;
    let name = name.trim();
    if name.is_empty() || name.len() > 255 {
        return Err(CompanyError::Invalid(
            "name must be 1-255 characters".into(),
        ));
    }
    let webhook_url = webhook_url.map(self::webhook_url).transpose()?;
    let webhook_secret = secrets::new_webhook_secret()?;
    let (key, test_key) = futures::try_join!(make_key(KeyMode::Live), make_key(KeyMode::Test))?;

    let txn = db.begin().await?;
    let inserted = company::ActiveModel {
        id: Set(Uuid::new_v4()),
        company_id: Set(company_id.to_owned()),
        name: Set(name.to_owned()),
        webhook_url: Set(webhook_url),
        webhook_secret: Set(webhook_secret),
        previous_webhook_secret: Set(None),
        previous_webhook_secret_expires_at: Set(None),
        data_retention_days: Set(None),
        ..Default::default()
    }
    .insert(&txn)
    .await;
    let company = match inserted {
        Ok(c) => c,
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(CompanyError::AlreadyExists(company_id.to_owned()));
        }
        Err(e) => return Err(e.into()),
    };
    insert_key(&txn, company_id, &key, &KeySpec::LIVE_ALL, None).await?;
    insert_key(&txn, company_id, &test_key, &KeySpec::TEST_ALL, None).await?;
    txn.commit().await?;
    Ok(CreatedCompany {
        company,
        api_key: key.key,
        key_lookup_id: key.lookup_id,
        test_api_key: test_key.key,
    })
}

/// How many usable (not revoked, not expired) keys a company may hold through self-service:
/// enough for every service and rotation, and a bound on what a leaked management key can pile
/// up. The operator's `company rotate-key` is not bound by it.
pub const MAX_USABLE_KEYS: i64 = 50;

/// Inserts a key unless the company already holds `$11` usable keys at `$6` (now): the count
/// and the insert are one statement, run after the company's row is locked
/// ([`lock_company`]), so concurrent creates and rolls of one company take their turns and
/// never pass the budget. `$1`–`$10`: id, company, lookup id, hash, check value, created at,
/// mode, the two scopes, label. Plain SQL both engines run as written.
pub const INSERT_KEY_WITHIN_BUDGET_SQL: &str = "INSERT INTO api_keys \
       (id, company_id, lookup_id, key_hash, secret_check, created_at, mode, \
        scope_verifications, scope_management, label) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
     WHERE (SELECT COUNT(*) FROM api_keys \
            WHERE company_id = $2 AND revoked_at IS NULL \
              AND (expires_at IS NULL OR expires_at > $6)) < $11 \
     RETURNING *";

/// Takes the company's row lock inside `txn` (PostgreSQL: `FOR UPDATE`; SQLite: the
/// transaction, begun `IMMEDIATE`, already holds the database's write lock), so that the
/// key-budget statement that follows sees every key committed before it.
async fn lock_company(txn: &DatabaseTransaction, company_id: &str) -> Result<(), CompanyError> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Sqlite => "SELECT 1 AS found FROM companies WHERE company_id = $1",
        _ => "SELECT 1 AS found FROM companies WHERE company_id = $1 FOR UPDATE",
    };
    let found = txn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [company_id.into()],
        ))
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(CompanyError::NotFound(company_id.to_owned())),
    }
}

/// Inserts a self-service key within the budget ([`INSERT_KEY_WITHIN_BUDGET_SQL`]); the
/// company's row must be locked in `txn` first ([`lock_company`]).
async fn insert_key_within_budget(
    txn: &DatabaseTransaction,
    company_id: &str,
    key: &secrets::NewApiKey,
    spec: &KeySpec,
) -> Result<api_key::Model, CompanyError> {
    use sea_orm::ActiveEnum as _;
    let now = sql::now();
    api_key::Model::find_by_statement(sea_orm::Statement::from_sql_and_values(
        txn.get_database_backend(),
        INSERT_KEY_WITHIN_BUDGET_SQL,
        [
            Uuid::new_v4().into(),
            company_id.into(),
            key.lookup_id.clone().into(),
            key.hash.clone().into(),
            Some(key.check.clone()).into(),
            now.into(),
            spec.mode.to_value().into(),
            spec.scopes.verifications.into(),
            spec.scopes.management.into(),
            spec.label.clone().into(),
            MAX_USABLE_KEYS.into(),
        ],
    ))
    .one(txn)
    .await?
    .ok_or(CompanyError::KeyBudgetReached)
}

/// A write transaction: on SQLite begun `IMMEDIATE`, so it holds the write lock from the
/// start and never has to upgrade a read lock (which no busy timeout can wait out).
async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..sea_orm::TransactionOptions::default()
    })
    .await
}

/// A new key of `mode`, hashed off the async threads (argon2 takes ~18 ms of CPU).
async fn make_key(mode: KeyMode) -> Result<secrets::NewApiKey, CompanyError> {
    tokio::task::spawn_blocking(move || secrets::new_api_key(mode))
        .await
        .map_err(|e| CompanyError::Invalid(format!("key generation task failed: {e}")))?
        .map_err(CompanyError::from)
}

async fn insert_key(
    conn: &impl ConnectionTrait,
    company_id: &str,
    key: &secrets::NewApiKey,
    spec: &KeySpec,
    expires_at: Option<DateTime<Utc>>,
) -> Result<api_key::Model, DbErr> {
    api_key::ActiveModel {
        id: Set(Uuid::new_v4()),
        company_id: Set(company_id.to_owned()),
        lookup_id: Set(key.lookup_id.clone()),
        key_hash: Set(key.hash.clone()),
        secret_check: Set(Some(key.check.clone())),
        created_at: Set(sql::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
        mode: Set(spec.mode),
        scope_verifications: Set(spec.scopes.verifications),
        scope_management: Set(spec.scopes.management),
        label: Set(spec.label.clone()),
        expires_at: Set(expires_at),
    }
    .insert(conn)
    .await
}

/// Finds a company by its public id.
pub async fn find_company(
    db: &impl ConnectionTrait,
    company_id: &str,
) -> Result<Option<company::Model>, DbErr> {
    company::Entity::find()
        .filter(company::Column::CompanyId.eq(company_id))
        .one(db)
        .await
}

/// Every company with its keys, oldest first.
pub async fn list_companies(db: &DatabaseConnection) -> Result<Vec<CompanySummary>, DbErr> {
    let companies = company::Entity::find()
        .order_by_asc(company::Column::CreatedAt)
        .order_by_asc(company::Column::CompanyId)
        .all(db)
        .await?;
    let mut keys: std::collections::HashMap<String, Vec<ApiKeySummary>> = Default::default();
    for k in api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .order_by_asc(api_key::Column::LookupId)
        .all(db)
        .await?
    {
        keys.entry(k.company_id.clone())
            .or_default()
            .push(ApiKeySummary::from(k));
    }
    Ok(companies
        .into_iter()
        .map(|c| CompanySummary {
            api_keys: keys.remove(&c.company_id).unwrap_or_default(),
            company_id: c.company_id,
            name: c.name,
            webhook_url: c.webhook_url,
            is_active: c.is_active,
            rate_limit_initiate_per_hour: c.rate_limit_initiate_per_hour,
            rate_limit_status_per_hour: c.rate_limit_status_per_hour,
            data_retention_days: c.data_retention_days,
            created_at: c.created_at,
        })
        .collect())
}

/// Adds a new key; with `revoke_existing`, every older key is revoked in the same transaction.
pub async fn rotate_key(
    db: &DatabaseConnection,
    company_id: &str,
    revoke_existing: bool,
) -> Result<(Secret, String), CompanyError> {
    let key = make_key(KeyMode::Live).await?;
    let txn = db.begin().await?;
    if find_company(&txn, company_id).await?.is_none() {
        return Err(CompanyError::NotFound(company_id.to_owned()));
    }
    if revoke_existing {
        api_key::Entity::update_many()
            .col_expr(
                api_key::Column::RevokedAt,
                sql::now_expr(txn.get_database_backend()),
            )
            .filter(api_key::Column::CompanyId.eq(company_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    insert_key(&txn, company_id, &key, &KeySpec::LIVE_ALL, None).await?;
    txn.commit().await?;
    Ok((key.key, key.lookup_id))
}

/// A company's keys, oldest first (revoked and expired ones included, for the record).
pub async fn list_keys(
    db: &impl ConnectionTrait,
    company_id: &str,
) -> Result<Vec<ApiKeySummary>, DbErr> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::CompanyId.eq(company_id))
        .order_by_asc(api_key::Column::CreatedAt)
        .order_by_asc(api_key::Column::LookupId)
        .all(db)
        .await?
        .into_iter()
        .map(ApiKeySummary::from)
        .collect())
}

/// Checks a key label: 1–255 bytes, with a visible character and no control, format or bidi
/// characters (it is shown in listings and dashboards).
pub fn validate_label(label: &str) -> Result<(), CompanyError> {
    if label.len() > 255 {
        return Err(CompanyError::Invalid(
            "label must be at most 255 bytes".into(),
        ));
    }
    crate::text::check_identifier(label)
        .map_err(|why| CompanyError::Invalid(format!("label {why}")))
}

/// Issues a new key for an existing company, within [`MAX_USABLE_KEYS`].
pub async fn create_key(
    db: &DatabaseConnection,
    company_id: &str,
    spec: &KeySpec,
) -> Result<IssuedKey, CompanyError> {
    if let Some(label) = &spec.label {
        validate_label(label)?;
    }
    let key = make_key(spec.mode).await?;
    let txn = begin_write(db).await?;
    lock_company(&txn, company_id).await?;
    let row = insert_key_within_budget(&txn, company_id, &key, spec).await?;
    txn.commit().await?;
    Ok(IssuedKey {
        key: key.key,
        summary: row.into(),
    })
}

/// Rolls a key: a new key with the same mode, scopes and label, while the old one keeps
/// working for `overlap` (at most [`MAX_ROLL_OVERLAP`]; zero stops it now). An old key that
/// already expires sooner keeps its earlier expiry. The new key must fit in
/// [`MAX_USABLE_KEYS`] beside the old one while it still works. Returns the new key and the old
/// key's listing as it now stands.
pub async fn roll_key(
    db: &DatabaseConnection,
    company_id: &str,
    key_id: &str,
    overlap: std::time::Duration,
) -> Result<(IssuedKey, ApiKeySummary), CompanyError> {
    if overlap > MAX_ROLL_OVERLAP {
        return Err(CompanyError::Invalid(
            "expiresInSeconds must be 0-604800".into(),
        ));
    }
    let overlap = chrono::Duration::from_std(overlap)
        .map_err(|_| CompanyError::Invalid("expiresInSeconds must be 0-604800".into()))?;
    let find = || {
        api_key::Entity::find()
            .filter(api_key::Column::CompanyId.eq(company_id))
            .filter(api_key::Column::LookupId.eq(key_id))
    };
    // Read first (outside the transaction) to know the mode before paying for argon2.
    let old = find()
        .one(db)
        .await?
        .ok_or_else(|| CompanyError::KeyNotFound(key_id.to_owned()))?;
    let key = make_key(old.mode).await?;
    let txn = begin_write(db).await?;
    lock_company(&txn, company_id).await?;
    // The row again, inside the transaction: a revoke or roll that committed meanwhile counts.
    let old = find()
        .one(&txn)
        .await?
        .ok_or_else(|| CompanyError::KeyNotFound(key_id.to_owned()))?;
    if old.revoked_at.is_some() {
        return Err(CompanyError::KeyRevoked(key_id.to_owned()));
    }
    let now = sql::now();
    let ends = now + overlap;
    let expires_at = old.expires_at.map_or(ends, |at| at.min(ends));
    if old.expires_at.is_some_and(|at| at <= now) {
        // An expired key is as dead as a revoked one.
        return Err(CompanyError::KeyRevoked(key_id.to_owned()));
    }
    let spec = KeySpec {
        mode: old.mode,
        scopes: Scopes {
            verifications: old.scope_verifications,
            management: old.scope_management,
        },
        label: old.label.clone(),
    };
    api_key::Entity::update_many()
        .col_expr(api_key::Column::ExpiresAt, Expr::value(expires_at))
        .filter(api_key::Column::Id.eq(old.id))
        .exec(&txn)
        .await?;
    let new = insert_key_within_budget(&txn, company_id, &key, &spec).await?;
    txn.commit().await?;
    let mut old = ApiKeySummary::from(old);
    old.expires_at = Some(expires_at);
    Ok((
        IssuedKey {
            key: key.key,
            summary: new.into(),
        },
        old,
    ))
}

/// Revokes one key of a company. Revoking an already revoked key is not an error.
pub async fn revoke_key(
    db: &DatabaseConnection,
    company_id: &str,
    key_id: &str,
) -> Result<(), CompanyError> {
    let res = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            Func::coalesce([
                Expr::col(api_key::Column::RevokedAt),
                sql::now_expr(db.get_database_backend()),
            ])
            .into(),
        )
        .filter(api_key::Column::CompanyId.eq(company_id))
        .filter(api_key::Column::LookupId.eq(key_id))
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Err(CompanyError::KeyNotFound(key_id.to_owned()));
    }
    Ok(())
}

/// Sets (or, with `None`, clears) the webhook URL.
pub async fn set_webhook(
    db: &DatabaseConnection,
    company_id: &str,
    url: Option<&str>,
) -> Result<(), CompanyError> {
    let url = url.map(webhook_url).transpose()?;
    let res = update_company(db, company_id)
        .col_expr(company::Column::WebhookUrl, Expr::value(url))
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

/// Replaces the webhook secret with a new one; the old one keeps signing for `overlap`
/// (zero: not at all). A rotation during an overlap drops the older previous secret at once:
/// only the secret being replaced is kept. Returns the new secret and when the previous one
/// stops signing. One statement, so two rotations at once cannot interleave.
pub async fn rotate_webhook_secret(
    db: &DatabaseConnection,
    company_id: &str,
    overlap: std::time::Duration,
) -> Result<(Secret, DateTime<Utc>), CompanyError> {
    let overlap = chrono::Duration::from_std(overlap)
        .map_err(|_| CompanyError::Invalid("overlap out of range".into()))?;
    let secret = secrets::new_webhook_secret()?;
    let until = sql::now() + overlap;
    // SET's right-hand sides read the row as it was, on both engines: the previous secret is
    // the one being replaced.
    let res = update_company(db, company_id)
        .col_expr(
            company::Column::PreviousWebhookSecret,
            Expr::col(company::Column::WebhookSecret),
        )
        .col_expr(
            company::Column::PreviousWebhookSecretExpiresAt,
            Expr::value(until),
        )
        .col_expr(company::Column::WebhookSecret, Expr::value(secret.clone()))
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)?;
    Ok((Secret::new(secret), until))
}

/// Activates or deactivates a company.
pub async fn set_active(
    db: &DatabaseConnection,
    company_id: &str,
    active: bool,
) -> Result<(), CompanyError> {
    let res = update_company(db, company_id)
        .col_expr(company::Column::IsActive, Expr::value(active))
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

/// Sets (or, with `None`, clears back to `DATA_RETENTION_DAYS`) a company's retention window.
pub async fn set_retention_days(
    db: &DatabaseConnection,
    company_id: &str,
    days: Option<u32>,
) -> Result<(), CompanyError> {
    let days = days
        .map(|d| {
            i32::try_from(d)
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| CompanyError::Invalid("retention must be 1-3650 days".into()))
        })
        .transpose()?;
    let res = update_company(db, company_id)
        .col_expr(company::Column::DataRetentionDays, Expr::value(days))
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

/// Sets or clears the per-company rate-limit overrides (per hour).
pub async fn set_rate_limits(
    db: &DatabaseConnection,
    company_id: &str,
    initiate_per_hour: Option<u32>,
    status_per_hour: Option<u32>,
) -> Result<(), CompanyError> {
    let to_i32 = |v: Option<u32>| -> Result<Option<i32>, CompanyError> {
        v.map(|n| {
            i32::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| CompanyError::Invalid("rate limits must be 1..=2147483647".into()))
        })
        .transpose()
    };
    let res = update_company(db, company_id)
        .col_expr(
            company::Column::RateLimitInitiatePerHour,
            Expr::value(to_i32(initiate_per_hour)?),
        )
        .col_expr(
            company::Column::RateLimitStatusPerHour,
            Expr::value(to_i32(status_per_hour)?),
        )
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

/// A company's own abuse-control limits (`None`: the configured default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Initiations per number, mode and window (1–1000000).
    pub initiate_per_number: Option<u32>,
    /// That window in seconds (1–604800).
    pub initiate_per_number_window_seconds: Option<u32>,
    /// Seconds after a deny during which the company may not initiate for that number
    /// (0–31536000).
    pub deny_cooldown_seconds: Option<u32>,
}

/// Sets or clears a company's own per-number limit, its window and its deny cooldown.
pub async fn set_abuse_limits(
    db: &DatabaseConnection,
    company_id: &str,
    limits: AbuseLimits,
) -> Result<(), CompanyError> {
    let checked = |v: Option<u32>, (lo, hi): (u32, u32), what: &str| {
        v.map(|n| {
            (lo..=hi)
                .contains(&n)
                .then(|| i32::try_from(n).ok())
                .flatten()
                .ok_or_else(|| CompanyError::Invalid(format!("{what} must be {lo}-{hi}")))
        })
        .transpose()
    };
    let res = update_company(db, company_id)
        .col_expr(
            company::Column::RateLimitInitiatePerNumber,
            Expr::value(checked(
                limits.initiate_per_number,
                (1, 1_000_000),
                "the per-number limit",
            )?),
        )
        .col_expr(
            company::Column::RateLimitInitiatePerNumberWindowSeconds,
            Expr::value(checked(
                limits.initiate_per_number_window_seconds,
                (1, 604_800),
                "the per-number window (seconds)",
            )?),
        )
        .col_expr(
            company::Column::DenyCooldownSeconds,
            Expr::value(checked(
                limits.deny_cooldown_seconds,
                (0, 31_536_000),
                "the deny cooldown (seconds)",
            )?),
        )
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

/// Sets the regions a company serves (already checked by
/// [`crate::abuse::countries::parse_codes`]); an empty list allows every region.
pub async fn set_allowed_countries(
    db: &DatabaseConnection,
    company_id: &str,
    codes: &[String],
) -> Result<(), CompanyError> {
    let res = update_company(db, company_id)
        .col_expr(
            company::Column::AllowedCountries,
            Expr::value(crate::abuse::countries::to_column(codes)),
        )
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_ids_are_plain() {
        assert!(validate_company_id("comp_abc-1.x").is_ok());
        assert!(validate_company_id("").is_err());
        assert!(validate_company_id("a b").is_err());
        assert!(validate_company_id(&"a".repeat(256)).is_err());
    }
}
