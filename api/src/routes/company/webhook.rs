//! The webhook endpoint (`PUT`, `DELETE /company/webhook`), a test event
//! (`POST /company/webhook/test`) and the signing secret
//! (`POST /company/webhook/secret/rotate`).

use std::time::Duration;

use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use truenumber_core::{
    companies::{self, api_keys::AuthenticatedCompany},
    error_code::ErrorCode,
    webhooks::target,
};

use super::{
    FORBIDDEN, FORBIDDEN_TO_TEST_KEYS, LiveOnlyErrors, SYSTEM_ERROR, UNAUTHORIZED, UNAVAILABLE,
    authorize, company_error, own_row, require_live,
};
use crate::{
    error::{ApiError, db_error},
    json_body::{JsonBody, Validate, check_len},
    responses::{ErrorDoc, Failure, NoContent, OperationErrors, Success, SuccessBody},
    routes::ApiTags,
    security::CompanyAuth,
    state::AppState,
    timestamp::Timestamp,
};

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

/// The webhook endpoint and its secret.
#[derive(Debug)]
pub struct WebhookApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/company", tag = "ApiTags::Company")]
impl WebhookApi {
    /// Set your webhook URL
    ///
    /// Every completed verification is then POSTed there, signed with your webhook secret.
    #[oai(path = "/webhook", method = "put", operation_id = "setWebhook")]
    async fn set_webhook(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<SetWebhookRequest>,
    ) -> Result<Success<WebhookEndpoint>, Failure<SetWebhookErrors>> {
        authorize(&company)?;
        let url = set_url(&self.state, &company, &req.url).await?;
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
        authorize(&company)?;
        clear_url(&self.state, &company).await?;
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
        authorize(&company)?;
        Ok(Success(send_test(&self.state, &company).await?))
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
        authorize(&company)?;
        Ok(Success(rotate_secret(&self.state, &company).await?))
    }
}

/// Sets the company's webhook URL after the checks of `PUT /company/webhook` (a live identity
/// only; an http(s) URL whose host is public unless private networks are allowed); the URL as
/// stored. The API and the console both call this.
pub(crate) async fn set_url(
    state: &AppState,
    company: &AuthenticatedCompany,
    raw: &str,
) -> Result<String, ApiError> {
    require_live(company, "change the webhook URL")?;
    let invalid = |why: String| ApiError::new(ErrorCode::InvalidWebhookUrl, why);
    check_len("url", raw, 1, 2048)?;
    let url = target::validate_webhook_url(raw).map_err(|e| invalid(e.to_string()))?;
    target::check_registration(
        &url,
        state.config.webhook_allow_private_networks,
        REGISTRATION_DNS_TIMEOUT,
    )
    .await
    .map_err(|refused| invalid(refused.to_string()))?;
    companies::set_webhook(&state.db, &company.company_id, Some(&url))
        .await
        .map_err(company_error)?;
    tracing::info!("webhook URL set");
    Ok(url)
}

/// Removes the company's webhook URL (a live identity only).
pub(crate) async fn clear_url(
    state: &AppState,
    company: &AuthenticatedCompany,
) -> Result<(), ApiError> {
    require_live(company, "remove the webhook URL")?;
    companies::set_webhook(&state.db, &company.company_id, None)
        .await
        .map_err(company_error)?;
    tracing::info!("webhook URL removed");
    Ok(())
}

/// Queues a `webhook.test` event of the identity's mode to the company's webhook URL.
pub(crate) async fn send_test(
    state: &AppState,
    company: &AuthenticatedCompany,
) -> Result<WebhookTest, ApiError> {
    let row = own_row(state, company).await?;
    let not_configured = || {
        ApiError::new(
            ErrorCode::WebhookNotConfigured,
            "No webhook URL is set; set one with PUT /company/webhook first",
        )
    };
    if row.webhook_url.is_none() {
        return Err(not_configured());
    }
    let sent = truenumber_core::webhooks::send_test(
        &state.db,
        &state.publisher,
        &company.company_id,
        company.livemode(),
    )
    .await
    .map_err(db_error)?
    .ok_or_else(not_configured)?;
    tracing::info!(event_id = %sent.event_id, "test webhook queued");
    Ok(WebhookTest {
        event_id: sent.event_id,
        delivery_id: sent.delivery_id.to_string(),
    })
}

/// Rotates the signing secret (a live identity only); the old one keeps signing beside the new
/// one for `WEBHOOK_SECRET_OVERLAP_SECONDS`.
pub(crate) async fn rotate_secret(
    state: &AppState,
    company: &AuthenticatedCompany,
) -> Result<RotatedWebhookSecret, ApiError> {
    require_live(company, "rotate the webhook secret")?;
    let (secret, until) = companies::rotate_webhook_secret(
        &state.db,
        &company.company_id,
        state.config.webhook_secret_overlap,
    )
    .await
    .map_err(company_error)?;
    tracing::info!(previous_secret_expires_at = %until, "webhook secret rotated");
    Ok(RotatedWebhookSecret {
        webhook_secret: secret.expose().to_owned(),
        previous_secret_expires_at: until.into(),
    })
}
