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

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    sea_query::{self, Alias, Expr, Func, Query},
};
use sha2::{Digest, Sha256};
use truenumber_entities::{
    api_key::{self, KeyMode},
    company,
};

use crate::{companies::secrets, storage::sql};

/// `lastUsedAt` moves at most once per key per this interval (PRODUCT.md: "at most one write
/// per key per minute"), however many requests and nodes use the key.
pub const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// What an operation needs a key to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Initiate, status, and the verifications' list, summary and erase.
    Verifications,
    /// Everything under `/company`: the company's own settings, keys and deliveries.
    Management,
}

impl Scope {
    /// The scope's name, as the API writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Verifications => "verifications",
            Self::Management => "management",
        }
    }
}

/// The scopes a key carries (at least one: the schema refuses a key with none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    /// [`Scope::Verifications`].
    pub verifications: bool,
    /// [`Scope::Management`].
    pub management: bool,
}

impl Scopes {
    /// Both scopes: what `company create`, the operator's `rotate-key` and keys of the first
    /// form (`tn_<keyId>_<secret>`) have.
    pub const ALL: Self = Self {
        verifications: true,
        management: true,
    };

    /// The scopes named in `list` (duplicates are harmless); `None` for an empty list.
    pub fn from_list(list: &[Scope]) -> Option<Self> {
        let scopes = Self {
            verifications: list.contains(&Scope::Verifications),
            management: list.contains(&Scope::Management),
        };
        (scopes.verifications || scopes.management).then_some(scopes)
    }

    /// Whether `scope` is among them.
    pub const fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::Verifications => self.verifications,
            Scope::Management => self.management,
        }
    }

    /// Them, in a fixed order.
    pub fn list(self) -> Vec<Scope> {
        [Scope::Verifications, Scope::Management]
            .into_iter()
            .filter(|s| self.allows(*s))
            .collect()
    }
}

/// The company behind a verified API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedCompany {
    /// Public company id.
    pub company_id: String,
    /// Lookup id of the key used (for logs; not secret).
    pub key_id: String,
    /// The key's mode: which data it sees.
    pub mode: KeyMode,
    /// What the key may call.
    pub scopes: Scopes,
    /// When the key stops working, if it was rolled. Checked on every request, cached or not,
    /// so a rolled key stops at its instant on every node.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the company may use the API.
    pub is_active: bool,
    /// The company's own settings (merged over the configuration by
    /// [`Overrides::in_force`](super::policy::Overrides::in_force)).
    pub overrides: super::policy::Overrides,
}

impl AuthenticatedCompany {
    /// Whether the key works on live data (`false`: test mode).
    pub const fn livemode(&self) -> bool {
        self.mode.is_live()
    }

    /// The subject of the key's company-wide rate limits: a company's live and test requests
    /// count apart (`:` never occurs in a company id, so no company's subject is another's).
    pub fn limit_subject(&self) -> std::borrow::Cow<'_, str> {
        match self.mode {
            KeyMode::Live => std::borrow::Cow::Borrowed(&self.company_id),
            KeyMode::Test => std::borrow::Cow::Owned(format!("{}:test", self.company_id)),
        }
    }
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown, wrong, revoked or expired key (one answer for all).
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
    mode: KeyMode,
    scope_verifications: bool,
    scope_management: bool,
    expires_at: Option<DateTime<Utc>>,
    company_id: String,
    is_active: bool,
    rate_limit_initiate_per_hour: Option<i32>,
    rate_limit_status_per_hour: Option<i32>,
    rate_limit_initiate_per_number: Option<i32>,
    rate_limit_initiate_per_number_window_seconds: Option<i32>,
    deny_cooldown_seconds: Option<i32>,
    allowed_countries: Option<String>,
}

impl KeyRow {
    /// The company's own settings, as the key's row carries them (cached with the key).
    fn overrides(&self) -> super::policy::Overrides {
        let stored = |v: Option<i32>| v.and_then(|n| u32::try_from(n).ok());
        super::policy::Overrides {
            initiate_per_hour: stored(self.rate_limit_initiate_per_hour),
            status_per_hour: stored(self.rate_limit_status_per_hour),
            data_retention_days: None,
            initiate_per_number: stored(self.rate_limit_initiate_per_number),
            initiate_per_number_window_seconds: stored(
                self.rate_limit_initiate_per_number_window_seconds,
            ),
            deny_cooldown_seconds: stored(self.deny_cooldown_seconds),
            allowed_countries: crate::abuse::countries::from_column(
                self.allowed_countries.as_deref(),
            ),
        }
    }
}

/// Verified (or refused) keys by SHA-256 of the whole key; the key itself is never kept.
type Verdicts = moka::future::Cache<[u8; 32], Option<AuthenticatedCompany>>;

/// Stored key rows by key id (`None`: no such key), so that refusing a wrong secret for a
/// known key id needs no database round trip either.
type KeyRows = moka::future::Cache<String, Option<Arc<KeyRow>>>;

/// Keys whose `last_used_at` this node wrote (or found fresh) within
/// [`LAST_USED_RESOLUTION`].
type Touched = moka::future::Cache<String, ()>;

/// The last-used note: moves key `key_id`'s `last_used_at` to `now` unless it was moved
/// within [`LAST_USED_RESOLUTION`] (by any node); returns how many rows changed (0 or 1).
pub async fn note_key_use(
    db: &DatabaseConnection,
    key_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sea_orm::DbErr> {
    let stale_before =
        now - chrono::Duration::from_std(LAST_USED_RESOLUTION).unwrap_or(chrono::Duration::zero());
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
        .filter(api_key::Column::LookupId.eq(key_id))
        .filter(
            Condition::any()
                .add(api_key::Column::LastUsedAt.is_null())
                .add(api_key::Column::LastUsedAt.lt(stale_before)),
        )
        .exec(db)
        .await
        .map(|res| res.rows_affected)
}

/// Authenticates API keys against `api_keys`, caching verdicts for a short TTL.
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    db: DatabaseConnection,
    cache: Option<(Verdicts, KeyRows)>,
    touched: Touched,
    metrics: AuthMetrics,
}

/// What the authenticator counts.
#[derive(Debug, Clone, Default)]
pub struct AuthMetrics {
    /// argon2 verifications run.
    pub hashes: prometheus_client::metrics::counter::Counter,
    /// `last_used_at` writes that changed a row (at most one per key per minute).
    pub last_used_writes: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("cached", &self.cache.as_ref().map(|(v, _)| v.entry_count()))
            .finish()
    }
}

impl ApiKeyAuthenticator {
    /// An authenticator whose verdicts live `ttl` (zero disables the cache), counting what
    /// it does in `metrics`.
    pub fn new(db: DatabaseConnection, ttl: Duration, metrics: AuthMetrics) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            (
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .support_invalidation_closures()
                    .build(),
                moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(ttl)
                    .support_invalidation_closures()
                    .build(),
            )
        });
        let touched = moka::future::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(LAST_USED_RESOLUTION)
            .build();
        Self {
            db,
            cache,
            touched,
            metrics,
        }
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
        if company.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(AuthError::InvalidKey);
        }
        if !company.is_active {
            return Err(AuthError::CompanyInactive);
        }
        self.record_use(&company.key_id).await;
        Ok(company)
    }

    /// Moves the key's `last_used_at` if this node has not done so (or seen it fresh) within
    /// [`LAST_USED_RESOLUTION`]. The update itself only matches a row whose `last_used_at` is
    /// older than that, so several nodes together still write it at most once per interval.
    /// It runs in the background: a request never waits for it, and its failure is only
    /// logged.
    async fn record_use(&self, key_id: &str) {
        let entry = self.touched.entry_by_ref(key_id).or_insert(()).await;
        if !entry.is_fresh() {
            return;
        }
        let (db, key_id, writes) = (
            self.db.clone(),
            key_id.to_owned(),
            self.metrics.last_used_writes.clone(),
        );
        tokio::spawn(async move {
            match note_key_use(&db, &key_id, sql::now()).await {
                Ok(changed) => {
                    writes.inc_by(changed);
                }
                Err(e) => tracing::warn!(error = %e, "could not record API key use"),
            }
        });
    }

    /// Forgets every cached verdict (after revocations in tests and tools).
    pub fn invalidate_all(&self) {
        if let Some((verdicts, rows)) = &self.cache {
            verdicts.invalidate_all();
            rows.invalidate_all();
        }
    }

    /// Forgets what this node cached about every key of `company_id` (after its settings changed
    /// here); other nodes see the change within the cache TTL.
    pub async fn forget_company(&self, company_id: &str) {
        if let Some((verdicts, rows)) = &self.cache {
            let (a, b) = (company_id.to_owned(), company_id.to_owned());
            // As in `forget_key`: without invalidation closures, forget everything.
            if verdicts
                .invalidate_entries_if(move |_, v| v.as_ref().is_some_and(|c| c.company_id == a))
                .is_err()
                || rows
                    .invalidate_entries_if(move |_, r| {
                        r.as_ref().is_some_and(|r| r.company_id == b)
                    })
                    .is_err()
            {
                verdicts.invalidate_all();
                rows.invalidate_all();
            }
        }
    }

    /// Forgets what this node cached about one key (after it was revoked or rolled here);
    /// other nodes see the change within the cache TTL.
    pub async fn forget_key(&self, key_id: &str) {
        if let Some((verdicts, rows)) = &self.cache {
            let id = key_id.to_owned();
            // Only fails when the cache was built without invalidation closures, which `new`
            // always enables; fall back to forgetting everything rather than nothing.
            if verdicts
                .invalidate_entries_if(move |_, v| v.as_ref().is_some_and(|c| c.key_id == id))
                .is_err()
            {
                verdicts.invalidate_all();
            }
            rows.invalidate(key_id).await;
        }
    }

    /// `Ok(None)` is a refusal worth caching (unknown or revoked key id, a secret that passed
    /// the check value but not argon2); `Err(InvalidKey)` one that is not (a failed check).
    async fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<Option<AuthenticatedCompany>, AuthError> {
        let Some(secrets::KeyParts {
            mode: prefix_mode,
            lookup_id,
        }) = secrets::api_key_parts(token)
        else {
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
        // A key of the first form (no mode in its prefix) is a live key.
        let Some(row) =
            row.filter(|r| !r.revoked && r.mode == prefix_mode.unwrap_or(KeyMode::Live))
        else {
            return Ok(None);
        };
        if let Some(check) = &row.secret_check
            && !secrets::secret_check_matches(token, check)
        {
            return Err(AuthError::InvalidKey);
        }
        self.metrics.hashes.inc();
        let (token_owned, hash) = (token.to_owned(), row.key_hash.clone());
        let matches =
            tokio::task::spawn_blocking(move || secrets::verify_api_key(&token_owned, &hash))
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?
                .map_err(|e| AuthError::Internal(e.to_string()))?;
        if !matches {
            return Ok(None);
        }
        if row.secret_check.is_none() {
            // A key older than check values gets its own now. Best effort: a failure here
            // must not refuse a good key.
            if let Err(e) = api_key::Entity::update_many()
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
                tracing::warn!(error = %e, "could not record an API key's check value");
            }
            if let Some((_, rows)) = &self.cache {
                // Read the row afresh next time, with its check value.
                rows.invalidate(lookup_id).await;
            }
        }
        Ok(Some(AuthenticatedCompany {
            company_id: row.company_id.clone(),
            key_id: lookup_id.to_owned(),
            mode: row.mode,
            scopes: Scopes {
                verifications: row.scope_verifications,
                management: row.scope_management,
            },
            expires_at: row.expires_at,
            is_active: row.is_active,
            overrides: row.overrides(),
        }))
    }

    /// The key with its company: `key_hash`, `secret_check`, `revoked_at IS NOT NULL AS
    /// revoked`, its mode, scopes and expiry, and the company's `company_id`, `is_active` and rate-limit overrides.
    async fn fetch_row(&self, lookup_id: &str) -> Result<Option<KeyRow>, AuthError> {
        let (k, c) = (api_key::Entity, company::Entity);
        let query = Query::select()
            .column((k, api_key::Column::KeyHash))
            .column((k, api_key::Column::SecretCheck))
            .column((k, api_key::Column::Mode))
            .column((k, api_key::Column::ScopeVerifications))
            .column((k, api_key::Column::ScopeManagement))
            .column((k, api_key::Column::ExpiresAt))
            .expr_as(
                sea_query::ExprTrait::is_not_null(Expr::col((k, api_key::Column::RevokedAt))),
                Alias::new("revoked"),
            )
            .column((c, company::Column::CompanyId))
            .column((c, company::Column::IsActive))
            .column((c, company::Column::RateLimitInitiatePerHour))
            .column((c, company::Column::RateLimitStatusPerHour))
            .column((c, company::Column::RateLimitInitiatePerNumber))
            .column((c, company::Column::RateLimitInitiatePerNumberWindowSeconds))
            .column((c, company::Column::DenyCooldownSeconds))
            .column((c, company::Column::AllowedCountries))
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
