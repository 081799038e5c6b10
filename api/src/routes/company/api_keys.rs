//! API keys: list, create, roll, revoke (`/company/api-keys`). A company holds at most
//! [`companies::MAX_USABLE_KEYS`] usable keys; create and roll hash (one argon2id each) off the async
//! threads.

use std::time::Duration;

use poem_openapi::{Enum, Object, OpenApi, param::Path};
use serde::Deserialize;
use truenumber_core::{
    companies::api_keys::{AuthenticatedCompany, Scope, Scopes},
    companies::{self, ApiKeySummary, CompanyError, KeySpec},
};
use truenumber_entities::api_key::KeyMode;

use super::{
    FORBIDDEN, FORBIDDEN_TO_TEST_KEYS, ReadErrors, SYSTEM_ERROR, UNAUTHORIZED, UNAVAILABLE,
    authorize, company_error, require_live,
};
use crate::{
    error::{ApiError, db_error},
    json_body::{JsonBody, Validate, check_len, not_null},
    responses::{ErrorDoc, Failure, NoContent, OperationErrors, Success, SuccessBody},
    routes::ApiTags,
    security::CompanyAuth,
    state::AppState,
    timestamp::Timestamp,
};

/// Which data a key works on: `live` (real verifications) or `test` (test mode: sessions
/// that only test keys see, completed with `POST /test/verifications/{verificationId}/complete`).
/// When creating a key: default the mode of the key that asks; a test key can create test
/// keys only (`LIVE_MODE_ONLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyMode {
    /// Real verifications.
    Live,
    /// Test mode's sessions.
    Test,
}

impl From<ApiKeyMode> for KeyMode {
    fn from(m: ApiKeyMode) -> Self {
        match m {
            ApiKeyMode::Live => Self::Live,
            ApiKeyMode::Test => Self::Test,
        }
    }
}

impl From<KeyMode> for ApiKeyMode {
    fn from(m: KeyMode) -> Self {
        match m {
            KeyMode::Live => Self::Live,
            KeyMode::Test => Self::Test,
        }
    }
}

/// What a key may call: `verifications` (initiate, status) and `management` (everything
/// under `/company`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyScope {
    /// The verification endpoints.
    Verifications,
    /// The self-service endpoints.
    Management,
}

impl From<ApiKeyScope> for Scope {
    fn from(s: ApiKeyScope) -> Self {
        match s {
            ApiKeyScope::Verifications => Self::Verifications,
            ApiKeyScope::Management => Self::Management,
        }
    }
}

impl From<Scope> for ApiKeyScope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Verifications => Self::Verifications,
            Scope::Management => Self::Management,
        }
    }
}

/// An API key as listed: never its secret.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKey {
    /// The key's public id (the part after `tn_live_`).
    pub key_id: String,
    // Documented on the type, so the schema is a plain `$ref`.
    pub mode: ApiKeyMode,
    /// What it may call.
    pub scopes: Vec<ApiKeyScope>,
    /// Your name for it; absent when none was given.
    #[oai(skip_serializing_if_is_none)]
    pub label: Option<String>,
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
    /// Last used (RFC 3339, UTC; moves at most once a minute); absent if never used.
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<Timestamp>,
    /// When it stops working (set when it was rolled); absent when it does not expire.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked; absent unless it was.
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<Timestamp>,
}

impl From<ApiKeySummary> for ApiKey {
    fn from(k: ApiKeySummary) -> Self {
        Self {
            key_id: k.key_id,
            mode: k.mode.into(),
            scopes: k.scopes.list().into_iter().map(ApiKeyScope::from).collect(),
            label: k.label,
            created_at: k.created_at.into(),
            last_used_at: k.last_used_at.map(Timestamp::from),
            expires_at: k.expires_at.map(Timestamp::from),
            revoked_at: k.revoked_at.map(Timestamp::from),
        }
    }
}

/// `GET /company/api-keys`.
#[derive(Debug, Object)]
pub struct ApiKeyList {
    /// Every key of your company, oldest first, revoked and expired ones included.
    pub data: Vec<ApiKey>,
}

impl SuccessBody for ApiKeyList {
    const DESCRIPTION: &'static str = "Your API keys.";
    const RATE_LIMITED: bool = false;
}

/// Body of `POST /company/api-keys`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    // Documented on the type, so the schema is a plain `$ref`.
    #[serde(default, deserialize_with = "not_null")]
    mode: Option<ApiKeyMode>,
    /// What the key may call (at least one; duplicates are ignored). Default: both.
    #[oai(validator(min_items = 1, max_items = 2))]
    #[serde(default, deserialize_with = "not_null")]
    pub scopes: Option<Vec<ApiKeyScope>>,
    /// Your name for the key, shown in listings. It must contain a visible character;
    /// control, format and bidi characters are refused.
    #[oai(validator(min_length = 1, max_length = 255))]
    #[serde(default, deserialize_with = "not_null")]
    pub label: Option<String>,
}

impl Validate for CreateApiKeyRequest {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(scopes) = &self.scopes
            && !(1..=2).contains(&scopes.len())
        {
            return Err(ApiError::invalid_request(
                "scopes",
                "must name 1 or 2 scopes",
            ));
        }
        if let Some(label) = &self.label {
            check_label(label)?;
        }
        Ok(())
    }
}

/// A key just issued: the key itself, shown only here, and its listing.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct IssuedApiKey {
    /// The whole key (`tn_live_<keyId>_<secret>`). Store it now: it is never shown again.
    pub api_key: String,
    /// The key as listed.
    #[oai(flatten)]
    pub key: ApiKey,
}

impl SuccessBody for IssuedApiKey {
    const DESCRIPTION: &'static str = "The key was created; `apiKey` is shown only here.";
    const STATUS: u16 = 201;
    const RATE_LIMITED: bool = false;
}

/// Body of `POST /company/api-keys/{keyId}/roll`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollApiKeyRequest {
    /// How long the old key keeps working, in seconds (0 stops it now; at most 7 days).
    /// Default 86400.
    #[oai(validator(minimum(value = "0"), maximum(value = "604800")))]
    #[serde(default, deserialize_with = "not_null")]
    pub expires_in_seconds: Option<u32>,
}

impl Validate for RollApiKeyRequest {
    fn validate(&self) -> Result<(), ApiError> {
        self.expires_in_seconds.map_or(Ok(()), check_roll_overlap)
    }
}

/// `POST /company/api-keys/{keyId}/roll`: the new key, and the old one's end.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RolledApiKey {
    /// The new key (same mode, scopes and label). Store it now: it is never shown again.
    pub api_key: String,
    /// The new key as listed.
    #[oai(flatten)]
    pub key: ApiKey,
    /// When the rolled key stops working (RFC 3339, UTC). Nodes that cached it see the
    /// change within `API_KEY_CACHE_TTL_SECONDS` (on the node that answered, at once).
    pub previous_key_expires_at: Timestamp,
}

impl SuccessBody for RolledApiKey {
    const DESCRIPTION: &'static str = "The new key; the old one works until \
                                       `previousKeyExpiresAt`.";
    const STATUS: u16 = 201;
    const RATE_LIMITED: bool = false;
}

const KEY_NOT_FOUND: ErrorDoc =
    ErrorDoc::before_limiter(404, "`API_KEY_NOT_FOUND` (also for another company's key).");

/// The error statuses of `POST /company/api-keys`.
#[derive(Debug)]
pub struct CreateKeyErrors;

impl OperationErrors for CreateKeyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: malformed body, an unknown mode, scope or field, a bad label.",
        ),
        UNAUTHORIZED,
        FORBIDDEN_TO_TEST_KEYS,
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::before_limiter(
            409,
            "`API_KEY_LIMIT_REACHED`: the company already holds the most usable keys allowed \
             (50); revoke one first.",
        ),
        ErrorDoc::PAYLOAD_TOO_LARGE,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of `POST /company/api-keys/{keyId}/roll`.
#[derive(Debug)]
pub struct RollKeyErrors;

impl OperationErrors for RollKeyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: malformed body, `expiresInSeconds` out of bounds, `keyId` too \
             long.",
        ),
        UNAUTHORIZED,
        FORBIDDEN,
        KEY_NOT_FOUND,
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::before_limiter(
            409,
            "`API_KEY_REVOKED`: the key is revoked or expired and cannot be rolled; \
             `API_KEY_LIMIT_REACHED`: the company already holds the most usable keys allowed \
             (50).",
        ),
        ErrorDoc::PAYLOAD_TOO_LARGE,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of `DELETE /company/api-keys/{keyId}`.
#[derive(Debug)]
pub struct RevokeKeyErrors;

impl OperationErrors for RevokeKeyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `keyId` too long."),
        UNAUTHORIZED,
        FORBIDDEN,
        KEY_NOT_FOUND,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// Refuses a key the caller's mode cannot see: a test key sees only test keys (a live key is as
/// unknown to it as an unknown id).
async fn require_visible_key(
    state: &AppState,
    company: &AuthenticatedCompany,
    key_id: &str,
) -> Result<(), ApiError> {
    if company.livemode() {
        return Ok(());
    }
    let visible = companies::list_keys(&state.db, &company.company_id)
        .await
        .map_err(db_error)?
        .iter()
        .any(|k| k.key_id == key_id && k.mode == company.mode);
    if visible {
        Ok(())
    } else {
        Err(company_error(CompanyError::KeyNotFound(key_id.to_owned())))
    }
}

/// The company's API keys.
#[derive(Debug)]
pub struct ApiKeysApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/company", tag = "ApiTags::Company")]
impl ApiKeysApi {
    /// List your API keys
    ///
    /// Every key of your company with its mode, scopes, label and dates; never a secret. A
    /// test key lists only test keys.
    #[oai(path = "/api-keys", method = "get", operation_id = "listApiKeys")]
    async fn list_keys(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<ApiKeyList>, Failure<ReadErrors>> {
        authorize(&company)?;
        let keys = companies::list_keys(&self.state.db, &company.company_id)
            .await
            .map_err(db_error)?;
        Ok(Success(ApiKeyList {
            data: keys
                .into_iter()
                .filter(|k| company.livemode() || k.mode == company.mode)
                .map(ApiKey::from)
                .collect(),
        }))
    }

    /// Create an API key
    ///
    /// A new key of the mode (default: the calling key's) and scopes (default: both) asked
    /// for. The key is in the response and never shown again. A test key creates test keys
    /// only.
    #[oai(path = "/api-keys", method = "post", operation_id = "createApiKey")]
    async fn create_key(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<CreateApiKeyRequest>,
    ) -> Result<Success<IssuedApiKey>, Failure<CreateKeyErrors>> {
        authorize(&company)?;
        let scopes = match &req.scopes {
            Some(list) => {
                let list: Vec<Scope> = list.iter().copied().map(Scope::from).collect();
                Scopes::from_list(&list)
                    .ok_or_else(|| ApiError::invalid_request("scopes", "must name a scope"))?
            }
            None => Scopes::ALL,
        };
        Ok(Success(
            create(
                &self.state,
                &company,
                req.mode.map(KeyMode::from),
                scopes,
                req.label,
            )
            .await?,
        ))
    }

    /// Roll an API key
    ///
    /// Issues a new key with the same mode, scopes and label; the old key keeps working for
    /// `expiresInSeconds` (default one day) so your services can switch without downtime.
    #[oai(
        path = "/api-keys/:keyId/roll",
        method = "post",
        operation_id = "rollApiKey"
    )]
    async fn roll_key(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The key to roll.
        #[oai(name = "keyId", validator(min_length = 1, max_length = 64))]
        key_id: Path<String>,
        JsonBody(req): JsonBody<RollApiKeyRequest>,
    ) -> Result<Success<RolledApiKey>, Failure<RollKeyErrors>> {
        authorize(&company)?;
        Ok(Success(
            roll(
                &self.state,
                &company,
                &key_id.0,
                req.expires_in_seconds.unwrap_or(86_400),
            )
            .await?,
        ))
    }

    /// Revoke an API key
    ///
    /// The key stops working at once on the node that answers and on every other node within
    /// `API_KEY_CACHE_TTL_SECONDS`. Revoking a revoked key again is not an error.
    #[oai(
        path = "/api-keys/:keyId",
        method = "delete",
        operation_id = "revokeApiKey"
    )]
    async fn revoke_key(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The key to revoke.
        #[oai(name = "keyId", validator(min_length = 1, max_length = 64))]
        key_id: Path<String>,
    ) -> Result<NoContent, Failure<RevokeKeyErrors>> {
        authorize(&company)?;
        revoke(&self.state, &company, &key_id.0).await?;
        Ok(NoContent)
    }
}

/// The checks of a key's label (the API's body and the console's form).
pub(crate) fn check_label(label: &str) -> Result<(), ApiError> {
    check_len("label", label, 1, 255)?;
    truenumber_core::text::check_identifier(label)
        .map_err(|why| ApiError::invalid_request("label", why))
}

/// The bounds of a roll's overlap, in seconds.
pub(crate) fn check_roll_overlap(seconds: u32) -> Result<(), ApiError> {
    if u64::from(seconds) > companies::MAX_ROLL_OVERLAP.as_secs() {
        return Err(ApiError::invalid_request(
            "expiresInSeconds",
            "must be 0 to 604800",
        ));
    }
    Ok(())
}

/// Issues a key of `mode` (default: the identity's) with `scopes` and `label`; a live key
/// needs a live identity.
pub(crate) async fn create(
    state: &AppState,
    company: &AuthenticatedCompany,
    mode: Option<KeyMode>,
    scopes: Scopes,
    label: Option<String>,
) -> Result<IssuedApiKey, ApiError> {
    if let Some(label) = &label {
        check_label(label)?;
    }
    let mode = mode.unwrap_or(company.mode);
    if mode == KeyMode::Live {
        require_live(company, "create a live key")?;
    }
    let issued = companies::create_key(
        &state.db,
        &company.company_id,
        &KeySpec {
            mode,
            scopes,
            label,
        },
    )
    .await
    .map_err(company_error)?;
    tracing::info!(key_id = %issued.summary.key_id, "API key created");
    Ok(IssuedApiKey {
        api_key: issued.key.expose().to_owned(),
        key: issued.summary.into(),
    })
}

/// Rolls key `key_id`: a new key like it, the old one working `overlap_seconds` more.
pub(crate) async fn roll(
    state: &AppState,
    company: &AuthenticatedCompany,
    key_id: &str,
    overlap_seconds: u32,
) -> Result<RolledApiKey, ApiError> {
    check_roll_overlap(overlap_seconds)?;
    require_visible_key(state, company, key_id).await?;
    let overlap = Duration::from_secs(u64::from(overlap_seconds));
    let (issued, old) = companies::roll_key(&state.db, &company.company_id, key_id, overlap)
        .await
        .map_err(company_error)?;
    state.auth.forget_key(key_id).await;
    tracing::info!(key_id = %key_id, new_key_id = %issued.summary.key_id, "API key rolled");
    let previous_key_expires_at = old
        .expires_at
        .ok_or_else(|| ApiError::internal("rolled key without an expiry"))?
        .into();
    Ok(RolledApiKey {
        api_key: issued.key.expose().to_owned(),
        key: issued.summary.into(),
        previous_key_expires_at,
    })
}

/// Revokes key `key_id` (again is not an error).
pub(crate) async fn revoke(
    state: &AppState,
    company: &AuthenticatedCompany,
    key_id: &str,
) -> Result<(), ApiError> {
    require_visible_key(state, company, key_id).await?;
    companies::revoke_key(&state.db, &company.company_id, key_id)
        .await
        .map_err(company_error)?;
    state.auth.forget_key(key_id).await;
    tracing::info!(key_id = %key_id, "API key revoked");
    Ok(())
}
