//! API-key authentication with an in-process cache, so argon2 is paid once per key per TTL and
//! never for a key whose lookup id is unknown or whose secret fails its check value.
//!
//! **Why a check value, not a limit on failures.** Key ids are the non-secret half of every
//! key, so anyone can present a real key id with a made-up secret. If that ran argon2 (~18 ms
//! of CPU), 16 connections could spend a core and slow every tenant, and the timing would tell
//! an outsider which key ids are live. Rate-limiting failures before hashing would cap the cost
//! but also let an attacker lock a company out of its own key. Instead each key stores the
//! first 32 bits of the SHA-256 of the whole key beside its argon2id hash
//! ([`secrets::secret_check`]): a wrong secret is refused after one SHA-256, and argon2 runs
//! only for a secret that passes it (a guess does with probability 2⁻³²). Key rows are cached
//! by key id for the same TTL as verdicts, so a flood of wrong secrets for a live key id costs
//! no database round trip either (the node's small pool stays free for real work). argon2id stays the stored proof of the key. Refusals by
//! the check value are not cached: each costs no more than the lookup, and caching random
//! secrets would only evict good keys. Keys older than the check value (none issued since
//! migration 4) are hashed as before until their next successful use writes their check.

use std::{sync::Arc, time::Duration};

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    sea_query::{self, Alias, Expr, Func, Query},
};
use sha2::{Digest, Sha256};
use truenumber_entities::{api_key, company};

use crate::{secrets, sql};

/// The company behind a verified API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedCompany {
    /// Public company id.
    pub company_id: String,
    /// Lookup id of the key used (for logs; not secret).
    pub key_id: String,
    /// Whether the company may use the API.
    pub is_active: bool,
    /// Per-company override of the initiate limit.
    pub rate_limit_initiate_per_hour: Option<u32>,
    /// Per-company override of the status limit.
    pub rate_limit_status_per_hour: Option<u32>,
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown, wrong or revoked key (one answer for all).
    #[error("invalid API key")]
    InvalidKey,
    /// The key is good but its company is deactivated.
    #[error("company is inactive")]
    CompanyInactive,
    /// The database could not be asked.
    #[error("database: {0}")]
    Db(Arc<DbErr>),
    /// Hashing failed (a corrupt stored hash) or its task died.
    #[error("key verification failed: {0}")]
    Internal(String),
}

#[derive(Debug, Clone, FromQueryResult)]
struct KeyRow {
    key_hash: String,
    secret_check: Option<String>,
    revoked: bool,
    company_id: String,
    is_active: bool,
    rate_limit_initiate_per_hour: Option<i32>,
    rate_limit_status_per_hour: Option<i32>,
}

/// Verified (or refused) keys by SHA-256 of the whole key; the key itself is never kept.
type Verdicts = moka::future::Cache<[u8; 32], Option<AuthenticatedCompany>>;

/// Stored key rows by key id (`None`: no such key), so that refusing a wrong secret for a
/// known key id needs no database round trip either.
type KeyRows = moka::future::Cache<String, Option<Arc<KeyRow>>>;

/// Authenticates API keys against `api_keys`, caching verdicts for a short TTL.
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    db: DatabaseConnection,
    cache: Option<(Verdicts, KeyRows)>,
    hashes: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("cached", &self.cache.as_ref().map(|(v, _)| v.entry_count()))
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// An authenticator whose verdicts live `ttl` (zero disables the cache); every argon2
    /// verification it runs is counted in `hashes`.
    pub fn new(
        db: DatabaseConnection,
        ttl: Duration,
        hashes: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            (
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .build(),
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .build(),
            )
        });
        Self { db, cache, hashes }
    }

    /// Authenticates a bearer token. Refused keys are cached too, so a wrong key with a real
    /// lookup id costs one argon2 per TTL, not one per request; concurrent first requests for
    /// one key share a single verification.
    pub async fn authenticate(&self, token: &str) -> Result<AuthenticatedCompany, AuthError> {
        let verdict = match &self.cache {
            Some((cache, _)) => {
                let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                cache
                    .try_get_with(digest, self.verify_uncached(token))
                    .await
                    .map_err(|e: Arc<AuthError>| match &*e {
                        AuthError::InvalidKey => AuthError::InvalidKey,
                        AuthError::Db(db) => AuthError::Db(db.clone()),
                        other => AuthError::Internal(other.to_string()),
                    })?
            }
            None => self.verify_uncached(token).await?,
        };
        let company = verdict.ok_or(AuthError::InvalidKey)?;
        if company.is_active {
            Ok(company)
        } else {
            Err(AuthError::CompanyInactive)
        }
    }

    /// Forgets every cached verdict (after revocations in tests and tools).
    pub fn invalidate_all(&self) {
        if let Some((verdicts, rows)) = &self.cache {
            verdicts.invalidate_all();
            rows.invalidate_all();
        }
    }

    /// `Ok(None)` is a refusal worth caching (unknown or revoked key id, a secret that passed
    /// the check value but not argon2); `Err(InvalidKey)` one that is not (a failed check).
    async fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<Option<AuthenticatedCompany>, AuthError> {
        let Some(lookup_id) = secrets::api_key_lookup_id(token) else {
            return Ok(None);
        };
        let row = match &self.cache {
            Some((_, rows)) => rows
                .try_get_with(lookup_id.to_owned(), async {
                    self.fetch_row(lookup_id).await.map(|r| r.map(Arc::new))
                })
                .await
                .map_err(|e: Arc<AuthError>| match &*e {
                    AuthError::Db(db) => AuthError::Db(db.clone()),
                    other => AuthError::Internal(other.to_string()),
                })?,
            None => self.fetch_row(lookup_id).await?.map(Arc::new),
        };
        let Some(row) = row.filter(|r| !r.revoked) else {
            return Ok(None);
        };
        if let Some(check) = &row.secret_check
            && !secrets::secret_check_matches(token, check)
        {
            return Err(AuthError::InvalidKey);
        }
        self.hashes.inc();
        let (token_owned, hash) = (token.to_owned(), row.key_hash.clone());
        let matches =
            tokio::task::spawn_blocking(move || secrets::verify_api_key(&token_owned, &hash))
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?
                .map_err(|e| AuthError::Internal(e.to_string()))?;
        if !matches {
            return Ok(None);
        }
        // Best effort: a failure here must not refuse a good key.
        if let Err(e) = api_key::Entity::update_many()
            .col_expr(
                api_key::Column::LastUsedAt,
                sql::now_expr(self.db.get_database_backend()),
            )
            .col_expr(
                api_key::Column::SecretCheck,
                Func::coalesce([
                    Expr::col(api_key::Column::SecretCheck),
                    Expr::value(secrets::secret_check(token)),
                ])
                .into(),
            )
            .filter(api_key::Column::LookupId.eq(lookup_id))
            .exec(&self.db)
            .await
        {
            tracing::warn!(error = %e, "could not record API key use");
        }
        if row.secret_check.is_none()
            && let Some((_, rows)) = &self.cache
        {
            // The update above gave this older key its check value: read it afresh next time.
            rows.invalidate(lookup_id).await;
        }
        let to_u32 = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok());
        Ok(Some(AuthenticatedCompany {
            company_id: row.company_id.clone(),
            key_id: lookup_id.to_owned(),
            is_active: row.is_active,
            rate_limit_initiate_per_hour: to_u32(row.rate_limit_initiate_per_hour),
            rate_limit_status_per_hour: to_u32(row.rate_limit_status_per_hour),
        }))
    }

    /// The key with its company: `key_hash`, `secret_check`, `revoked_at IS NOT NULL AS
    /// revoked`, and the company's `company_id`, `is_active` and rate-limit overrides.
    async fn fetch_row(&self, lookup_id: &str) -> Result<Option<KeyRow>, AuthError> {
        let (k, c) = (api_key::Entity, company::Entity);
        let query = Query::select()
            .column((k, api_key::Column::KeyHash))
            .column((k, api_key::Column::SecretCheck))
            .expr_as(
                sea_query::ExprTrait::is_not_null(Expr::col((k, api_key::Column::RevokedAt))),
                Alias::new("revoked"),
            )
            .column((c, company::Column::CompanyId))
            .column((c, company::Column::IsActive))
            .column((c, company::Column::RateLimitInitiatePerHour))
            .column((c, company::Column::RateLimitStatusPerHour))
            .from(k)
            .inner_join(
                c,
                sea_query::ExprTrait::equals(
                    Expr::col((c, company::Column::CompanyId)),
                    (k, api_key::Column::CompanyId),
                ),
            )
            .and_where(sea_query::ExprTrait::eq(
                Expr::col((k, api_key::Column::LookupId)),
                lookup_id,
            ))
            .to_owned();
        KeyRow::find_by_statement(self.db.get_database_backend().build(&query))
            .one(&self.db)
            .await
            .map_err(|e| AuthError::Db(Arc::new(e)))
    }
}
