//! Company self-service under `/company` (scope `management`): the company's profile, its
//! webhook endpoint and signing secret, and its API keys (list, create, roll, revoke).
//!
//! Every id in a path is looked up together with the key's company, so another company's key
//! id is `API_KEY_NOT_FOUND`, exactly as an unknown one. None of these operations counts
//! against a rate limit; the ones that hash (create, roll: one argon2id each) run it off the
//! async threads, and a company holds at most [`MAX_ACTIVE_KEYS`] usable keys.

use std::time::Duration;

use poem_openapi::{Enum, Object, OpenApi, param::Path};
use serde::Deserialize;
use truenumber_core::{
    companies::api_keys::{AuthenticatedCompany, Scope, Scopes},
    companies::{self, ApiKeySummary, CompanyError, KeySpec},
    error_code::ErrorCode,
    webhooks::target,
};
use truenumber_entities::api_key::KeyMode;

use crate::{
    error::{ApiError, db_error},
    json_body::{JsonBody, Validate, check_len, not_null},
    responses::{ErrorDoc, Failure, NoContent, OperationErrors, Success, SuccessBody},
    routes::ApiTags,
    security::{CompanyAuth, require_scope},
    state::AppState,
    timestamp::Timestamp,
};

/// How many usable (not revoked, not expired) keys a company may hold: enough for every
/// service and rotation, and a bound on what a leaked management key can pile up.
pub const MAX_ACTIVE_KEYS: usize = 50;

/// The rate limits in force for your company: your own where the operator set them, else the
/// defaults.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RateLimits {
    /// Initiates per hour.
    pub initiate_per_hour: u32,
    /// Status reads per hour.
    pub status_per_hour: u32,
    /// Submits per verification session per minute.
    pub submit_per_minute: u32,
}

/// `GET /company`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct CompanyProfile {
    /// Your company id.
    pub company_id: String,
    /// The name the TrueNumber app shows your users.
    pub name: String,
    /// Always `true` here (a deactivated company's keys are refused with `COMPANY_INACTIVE`).
    pub is_active: bool,
    /// Where webhooks go; absent when none is set.
    #[oai(skip_serializing_if_is_none)]
    pub webhook_url: Option<String>,
    // Documented on the type, so the schema is a plain `$ref`.
    rate_limits: RateLimits,
    /// Completed verifications older than this many days are deleted with their events and
    /// deliveries (your own window where the operator set one, else the default).
    pub data_retention_days: u32,
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
}

impl SuccessBody for CompanyProfile {
    const DESCRIPTION: &'static str = "Your company.";
    const RATE_LIMITED: bool = false;
}

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
    mode: ApiKeyMode,
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
            check_len("label", label, 1, 255)?;
            truenumber_core::text::check_identifier(label)
                .map_err(|why| ApiError::invalid_request("label", why))?;
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
        match self.expires_in_seconds {
            Some(s) if u64::from(s) > companies::MAX_ROLL_OVERLAP.as_secs() => Err(
                ApiError::invalid_request("expiresInSeconds", "must be 0 to 604800"),
            ),
            _ => Ok(()),
        }
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

/// Body of `PUT /company/webhook`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetWebhookRequest {
    /// Where to POST your webhooks: an absolute `http` or `https` URL without credentials, at
    /// most 2048 characters, whose host is a public address (checked now, after DNS, and again
    /// at every delivery).
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub url: String,
}

impl Validate for SetWebhookRequest {
    fn validate(&self) -> Result<(), ApiError> {
        check_len("url", &self.url, 1, 2048)
    }
}

/// `PUT /company/webhook`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// The URL as stored (normalised).
    pub webhook_url: String,
}

impl SuccessBody for WebhookEndpoint {
    const DESCRIPTION: &'static str = "The webhook URL is set.";
    const RATE_LIMITED: bool = false;
}

/// `POST /company/webhook/secret/rotate`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RotatedWebhookSecret {
    /// The new signing secret (`whsec_…`). Store it now: it is never shown again.
    pub webhook_secret: String,
    /// Until then every delivery carries two signatures, the new secret's and the previous
    /// one's (RFC 3339, UTC): switch your receiver to the new secret before it.
    pub previous_secret_expires_at: Timestamp,
}

impl SuccessBody for RotatedWebhookSecret {
    const DESCRIPTION: &'static str = "The secret was rotated.";
    const RATE_LIMITED: bool = false;
}

/// `POST /company/webhook/test`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookTest {
    /// The test event's id: its `webhook-id`.
    pub event_id: String,
    /// Its delivery, listed among your deliveries like any other.
    pub delivery_id: String,
}

impl SuccessBody for WebhookTest {
    const DESCRIPTION: &'static str = "Accepted: the test event is on its way to your webhook URL.";
    const STATUS: u16 = 202;
    const RATE_LIMITED: bool = false;
}

/// The error statuses of `POST /company/webhook/test`.
#[derive(Debug)]
pub struct WebhookTestErrors;

impl OperationErrors for WebhookTestErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        UNAUTHORIZED,
        FORBIDDEN,
        ErrorDoc::before_limiter(
            409,
            "`WEBHOOK_NOT_CONFIGURED`: set a webhook URL first (`PUT /company/webhook`).",
        ),
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

pub(crate) const UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid, revoked or expired API key.",
);
pub(crate) const FORBIDDEN: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`COMPANY_INACTIVE`, or `INSUFFICIENT_SCOPE`: the key lacks the `management` scope.",
);
/// 403 of an operation only a live key may call.
const FORBIDDEN_TO_TEST_KEYS: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`COMPANY_INACTIVE`, `INSUFFICIENT_SCOPE` (the key lacks the `management` scope), or \
     `LIVE_MODE_ONLY`: a test key cannot change company-wide settings or create live keys.",
);
pub(crate) const SYSTEM_ERROR: ErrorDoc = ErrorDoc::before_limiter(
    500,
    "`SYSTEM_ERROR`: a bug; the details are only in the log, under the request id.",
);
pub(crate) const UNAVAILABLE: ErrorDoc = ErrorDoc::before_limiter(
    503,
    "`SERVICE_UNAVAILABLE`: the database is unreachable; see `Retry-After`.",
);
const KEY_NOT_FOUND: ErrorDoc =
    ErrorDoc::before_limiter(404, "`API_KEY_NOT_FOUND` (also for another company's key).");

/// The error statuses of the reads (`GET /company`, `GET /company/api-keys`).
#[derive(Debug)]
pub struct ReadErrors;

impl OperationErrors for ReadErrors {
    const STATUSES: &'static [ErrorDoc] = &[UNAUTHORIZED, FORBIDDEN, SYSTEM_ERROR, UNAVAILABLE];
}

/// The error statuses of the bodiless operations a live key only may call.
#[derive(Debug)]
pub struct LiveOnlyErrors;

impl OperationErrors for LiveOnlyErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        UNAUTHORIZED,
        FORBIDDEN_TO_TEST_KEYS,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

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

/// The error statuses of `PUT /company/webhook`.
#[derive(Debug)]
pub struct SetWebhookErrors;

impl OperationErrors for SetWebhookErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST` (malformed body), or `INVALID_WEBHOOK_URL`: not an absolute \
             http(s) URL, carries credentials, or its host is (or resolves to) a loopback, \
             private, link-local, multicast or otherwise non-public address; the message says \
             which.",
        ),
        UNAUTHORIZED,
        FORBIDDEN_TO_TEST_KEYS,
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// How long registration waits for DNS before leaving the check to delivery time.
const REGISTRATION_DNS_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) fn company_error(e: CompanyError) -> ApiError {
    match e {
        CompanyError::KeyNotFound(_) => {
            ApiError::new(ErrorCode::ApiKeyNotFound, "API key not found")
        }
        CompanyError::KeyRevoked(_) => ApiError::new(
            ErrorCode::ApiKeyRevoked,
            "This API key is revoked or expired; create a new one instead",
        ),
        CompanyError::Invalid(why) => ApiError::new(ErrorCode::InvalidRequest, why),
        CompanyError::Db(db) => db_error(db),
        // The key's own company vanished under it (deleted by an operator): as for a key of
        // an unknown company.
        CompanyError::NotFound(_) => ApiError::new(ErrorCode::Unauthorized, "Invalid API key"),
        other => ApiError::internal(other),
    }
}

/// Refuses a new key when the company already holds [`MAX_ACTIVE_KEYS`] usable ones.
async fn check_key_budget(state: &AppState, company_id: &str) -> Result<(), ApiError> {
    let now = chrono::Utc::now();
    let usable = companies::list_keys(&state.db, company_id)
        .await
        .map_err(db_error)?
        .iter()
        .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > now))
        .count();
    if usable >= MAX_ACTIVE_KEYS {
        return Err(ApiError::new(
            ErrorCode::ApiKeyLimitReached,
            format!(
                "Your company already holds {MAX_ACTIVE_KEYS} usable API keys; revoke one first"
            ),
        ));
    }
    Ok(())
}

/// The self-service endpoints.
#[derive(Debug)]
pub struct CompanyApi {
    /// Shared state.
    pub state: AppState,
}

impl CompanyApi {
    fn authorize(&self, company: &AuthenticatedCompany) -> Result<(), ApiError> {
        require_scope(company, Scope::Management)
    }

    /// Company-wide settings (the webhook endpoint and its secret, live keys) change with a
    /// live key only: a test key, the one that lives in CI, cannot redirect live webhooks.
    fn require_live(company: &AuthenticatedCompany, what: &str) -> Result<(), ApiError> {
        if company.livemode() {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::LiveModeOnly,
            format!("A test key cannot {what}; use a live key"),
        ))
    }

    /// Refuses a key the caller's mode cannot see: a test key sees only test keys (a live
    /// key is as unknown to it as an unknown id).
    async fn require_visible_key(
        &self,
        company: &AuthenticatedCompany,
        key_id: &str,
    ) -> Result<(), ApiError> {
        if company.livemode() {
            return Ok(());
        }
        let visible = companies::list_keys(&self.state.db, &company.company_id)
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

    /// The key's own company row.
    async fn own_row(
        &self,
        company: &AuthenticatedCompany,
    ) -> Result<truenumber_entities::company::Model, ApiError> {
        companies::find_company(&self.state.db, &company.company_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| company_error(CompanyError::NotFound(company.company_id.clone())))
    }
}

#[OpenApi(prefix_path = "/company", tag = "ApiTags::Company")]
impl CompanyApi {
    /// Read your company
    ///
    /// Your company's profile: name, webhook URL and the rate limits in force.
    #[oai(path = "/", method = "get", operation_id = "getCompany")]
    async fn get_company(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<CompanyProfile>, Failure<ReadErrors>> {
        self.authorize(&company)?;
        let row = self.own_row(&company).await?;
        let config = &self.state.config;
        let limit = |own: Option<i32>, default: u32| {
            own.and_then(|n| u32::try_from(n).ok()).unwrap_or(default)
        };
        Ok(Success(CompanyProfile {
            company_id: row.company_id,
            name: row.name,
            is_active: row.is_active,
            webhook_url: row.webhook_url,
            rate_limits: RateLimits {
                initiate_per_hour: limit(
                    row.rate_limit_initiate_per_hour,
                    config.rate_limit_initiate_per_hour,
                ),
                status_per_hour: limit(
                    row.rate_limit_status_per_hour,
                    config.rate_limit_status_per_hour,
                ),
                submit_per_minute: config.rate_limit_submit_per_minute,
            },
            data_retention_days: row
                .data_retention_days
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(config.data_retention_days),
            created_at: row.created_at.into(),
        }))
    }

    /// Set your webhook URL
    ///
    /// Every completed verification is then POSTed there, signed with your webhook secret.
    #[oai(path = "/webhook", method = "put", operation_id = "setWebhook")]
    async fn set_webhook(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<SetWebhookRequest>,
    ) -> Result<Success<WebhookEndpoint>, Failure<SetWebhookErrors>> {
        self.authorize(&company)?;
        Self::require_live(&company, "change the webhook URL")?;
        let invalid = |why: String| ApiError::new(ErrorCode::InvalidWebhookUrl, why);
        let url = target::validate_webhook_url(&req.url).map_err(|e| invalid(e.to_string()))?;
        target::check_registration(
            &url,
            self.state.config.webhook_allow_private_networks,
            REGISTRATION_DNS_TIMEOUT,
        )
        .await
        .map_err(|refused| invalid(refused.to_string()))?;
        companies::set_webhook(&self.state.db, &company.company_id, Some(&url))
            .await
            .map_err(company_error)?;
        tracing::info!("webhook URL set");
        Ok(Success(WebhookEndpoint { webhook_url: url }))
    }

    /// Remove your webhook URL
    ///
    /// Events that complete while no URL is set are not delivered.
    #[oai(path = "/webhook", method = "delete", operation_id = "deleteWebhook")]
    async fn delete_webhook(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<NoContent, Failure<LiveOnlyErrors>> {
        self.authorize(&company)?;
        Self::require_live(&company, "remove the webhook URL")?;
        companies::set_webhook(&self.state.db, &company.company_id, None)
            .await
            .map_err(company_error)?;
        tracing::info!("webhook URL removed");
        Ok(NoContent)
    }

    /// Send a test webhook
    ///
    /// A signed `webhook.test` event (`{"event":"webhook.test","companyId","livemode",
    /// "timestamp"}`) goes to your webhook URL through the normal delivery path, with retries,
    /// and is listed among your deliveries.
    #[oai(
        path = "/webhook/test",
        method = "post",
        operation_id = "sendTestWebhook"
    )]
    async fn send_test_webhook(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<WebhookTest>, Failure<WebhookTestErrors>> {
        self.authorize(&company)?;
        let row = self.own_row(&company).await?;
        let not_configured = || {
            ApiError::new(
                ErrorCode::WebhookNotConfigured,
                "No webhook URL is set; set one with PUT /company/webhook first",
            )
        };
        if row.webhook_url.is_none() {
            return Err(not_configured().into());
        }
        let sent = truenumber_core::webhooks::send_test(
            &self.state.db,
            &self.state.publisher,
            &company.company_id,
            company.livemode(),
        )
        .await
        .map_err(db_error)?
        .ok_or_else(not_configured)?;
        tracing::info!(event_id = %sent.event_id, "test webhook queued");
        Ok(Success(WebhookTest {
            event_id: sent.event_id,
            delivery_id: sent.delivery_id.to_string(),
        }))
    }

    /// Rotate your webhook secret
    ///
    /// A new signing secret. For `WEBHOOK_SECRET_OVERLAP_SECONDS` (default one day) every
    /// delivery is signed with both the new and the previous secret, so your receiver can
    /// switch without losing an event. Rotating again during an overlap drops the older
    /// previous secret at once.
    #[oai(
        path = "/webhook/secret/rotate",
        method = "post",
        operation_id = "rotateWebhookSecret"
    )]
    async fn rotate_webhook_secret(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<RotatedWebhookSecret>, Failure<LiveOnlyErrors>> {
        self.authorize(&company)?;
        Self::require_live(&company, "rotate the webhook secret")?;
        let (secret, until) = companies::rotate_webhook_secret(
            &self.state.db,
            &company.company_id,
            self.state.config.webhook_secret_overlap,
        )
        .await
        .map_err(company_error)?;
        tracing::info!(previous_secret_expires_at = %until, "webhook secret rotated");
        Ok(Success(RotatedWebhookSecret {
            webhook_secret: secret.expose().to_owned(),
            previous_secret_expires_at: until.into(),
        }))
    }

    /// List your API keys
    ///
    /// Every key of your company with its mode, scopes, label and dates; never a secret. A
    /// test key lists only test keys.
    #[oai(path = "/api-keys", method = "get", operation_id = "listApiKeys")]
    async fn list_keys(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<ApiKeyList>, Failure<ReadErrors>> {
        self.authorize(&company)?;
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
        self.authorize(&company)?;
        let scopes = match &req.scopes {
            Some(list) => {
                let list: Vec<Scope> = list.iter().copied().map(Scope::from).collect();
                Scopes::from_list(&list)
                    .ok_or_else(|| ApiError::invalid_request("scopes", "must name a scope"))?
            }
            None => Scopes::ALL,
        };
        let mode = req.mode.map_or(company.mode, KeyMode::from);
        if mode == KeyMode::Live {
            Self::require_live(&company, "create a live key")?;
        }
        check_key_budget(&self.state, &company.company_id).await?;
        let issued = companies::create_key(
            &self.state.db,
            &company.company_id,
            &KeySpec {
                mode,
                scopes,
                label: req.label,
            },
        )
        .await
        .map_err(company_error)?;
        tracing::info!(key_id = %issued.summary.key_id, "API key created");
        Ok(Success(IssuedApiKey {
            api_key: issued.key.expose().to_owned(),
            key: issued.summary.into(),
        }))
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
        self.authorize(&company)?;
        self.require_visible_key(&company, &key_id.0).await?;
        check_key_budget(&self.state, &company.company_id).await?;
        let overlap = Duration::from_secs(u64::from(req.expires_in_seconds.unwrap_or(86_400)));
        let (issued, old) =
            companies::roll_key(&self.state.db, &company.company_id, &key_id.0, overlap)
                .await
                .map_err(company_error)?;
        self.state.auth.forget_key(&key_id.0).await;
        tracing::info!(key_id = %key_id.0, new_key_id = %issued.summary.key_id, "API key rolled");
        let previous_key_expires_at = old
            .expires_at
            .ok_or_else(|| ApiError::internal("rolled key without an expiry"))?
            .into();
        Ok(Success(RolledApiKey {
            api_key: issued.key.expose().to_owned(),
            key: issued.summary.into(),
            previous_key_expires_at,
        }))
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
        self.authorize(&company)?;
        self.require_visible_key(&company, &key_id.0).await?;
        companies::revoke_key(&self.state.db, &company.company_id, &key_id.0)
            .await
            .map_err(company_error)?;
        self.state.auth.forget_key(&key_id.0).await;
        tracing::info!(key_id = %key_id.0, "API key revoked");
        Ok(NoContent)
    }
}
