//! Companies and their API keys: what the operator commands and authentication read and write.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, SqlErr, TransactionTrait,
    sea_query::{Expr, Func},
};
use serde::Serialize;
use truenumber_entities::{api_key, company};
use uuid::Uuid;

use crate::{
    config::Secret,
    secrets::{self, KeyError},
    sql,
};

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
}

/// A key as listed: never its hash or secret.
#[derive(Debug, Clone, Serialize, FromQueryResult)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySummary {
    /// Public lookup id (also the middle part of the key).
    pub key_id: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last verified against its hash.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

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

/// Checks a webhook URL: absolute http(s) with a host, no credentials, at most 2048 bytes.
/// Where it points is checked again at delivery time (after DNS), not here.
pub fn validate_webhook_url(raw: &str) -> Result<String, CompanyError> {
    let bad = |why: &str| CompanyError::Invalid(format!("webhook URL {why}"));
    if raw.len() > 2048 {
        return Err(bad("is longer than 2048 bytes"));
    }
    let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    Ok(url.to_string())
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

/// Creates a company with its first API key and a webhook secret.
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
    let webhook_url = webhook_url.map(validate_webhook_url).transpose()?;
    let webhook_secret = secrets::new_webhook_secret()?;
    let key = tokio::task::spawn_blocking(secrets::new_api_key)
        .await
        .map_err(|e| CompanyError::Invalid(format!("key generation task failed: {e}")))??;

    let txn = db.begin().await?;
    let inserted = company::ActiveModel {
        id: Set(Uuid::new_v4()),
        company_id: Set(company_id.to_owned()),
        name: Set(name.to_owned()),
        webhook_url: Set(webhook_url),
        webhook_secret: Set(webhook_secret),
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
    insert_key(&txn, company_id, &key).await?;
    txn.commit().await?;
    Ok(CreatedCompany {
        company,
        api_key: key.key,
        key_lookup_id: key.lookup_id,
    })
}

async fn insert_key(
    conn: &impl ConnectionTrait,
    company_id: &str,
    key: &secrets::NewApiKey,
) -> Result<(), DbErr> {
    api_key::Entity::insert(api_key::ActiveModel {
        id: Set(Uuid::new_v4()),
        company_id: Set(company_id.to_owned()),
        lookup_id: Set(key.lookup_id.clone()),
        key_hash: Set(key.hash.clone()),
        secret_check: Set(Some(key.check.clone())),
        ..Default::default()
    })
    .exec_without_returning(conn)
    .await
    .map(|_| ())
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
    let keys = api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .order_by_asc(api_key::Column::LookupId)
        .all(db)
        .await?;
    Ok(companies
        .into_iter()
        .map(|c| CompanySummary {
            api_keys: keys
                .iter()
                .filter(|k| k.company_id == c.company_id)
                .map(|k| ApiKeySummary {
                    key_id: k.lookup_id.clone(),
                    created_at: k.created_at,
                    last_used_at: k.last_used_at,
                    revoked_at: k.revoked_at,
                })
                .collect(),
            company_id: c.company_id,
            name: c.name,
            webhook_url: c.webhook_url,
            is_active: c.is_active,
            rate_limit_initiate_per_hour: c.rate_limit_initiate_per_hour,
            rate_limit_status_per_hour: c.rate_limit_status_per_hour,
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
    let key = tokio::task::spawn_blocking(secrets::new_api_key)
        .await
        .map_err(|e| CompanyError::Invalid(format!("key generation task failed: {e}")))??;
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
    insert_key(&txn, company_id, &key).await?;
    txn.commit().await?;
    Ok((key.key, key.lookup_id))
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
    let url = url.map(validate_webhook_url).transpose()?;
    let res = update_company(db, company_id)
        .col_expr(company::Column::WebhookUrl, Expr::value(url))
        .exec(db)
        .await?;
    not_found_if_zero(res.rows_affected, company_id)
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

    #[test]
    fn webhook_urls_are_http_and_clean() {
        assert_eq!(
            validate_webhook_url("https://example.com/hook").unwrap(),
            "https://example.com/hook"
        );
        assert!(validate_webhook_url("ftp://example.com").is_err());
        assert!(validate_webhook_url("https://user:pw@example.com").is_err());
        assert!(validate_webhook_url("not a url").is_err());
        assert!(validate_webhook_url(&format!("https://e.com/{}", "a".repeat(2048))).is_err());
    }
}
