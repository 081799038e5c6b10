//! `GET /company`: the company's profile, with the limits and controls in force;
//! `PUT /company/settings`: what a company sets itself (the countries it serves).

use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use truenumber_core::{
    abuse::countries,
    companies::{self, api_keys::AuthenticatedCompany, policy::Overrides},
    error_code::ErrorCode,
};

use super::{
    FORBIDDEN_TO_TEST_KEYS, LiveOnlyErrors, ReadErrors, SYSTEM_ERROR, UNAUTHORIZED, UNAVAILABLE,
    authorize, company_error, own_row, require_live,
};
use crate::{
    error::ApiError,
    json_body::{JsonBody, Validate},
    responses::{ErrorDoc, Failure, OperationErrors, Success, SuccessBody},
    routes::ApiTags,
    security::CompanyAuth,
    state::AppState,
    timestamp::Timestamp,
};

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
    /// Initiations per number (per mode) within `initiatePerNumberWindowSeconds`; more are
    /// `NUMBER_RATE_LIMITED`.
    pub initiate_per_number: u32,
    /// The per-number limit's sliding window, in seconds.
    pub initiate_per_number_window_seconds: u64,
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
    pub rate_limits: RateLimits,
    /// Completed verifications older than this many days are deleted with their events and
    /// deliveries (your own window where the operator set one, else the default).
    pub data_retention_days: u32,
    /// After a user says "not me", how long (seconds) you may not start a verification of
    /// that number again (`RECENTLY_DENIED`).
    pub deny_cooldown_seconds: u64,
    /// The regions (ISO 3166-1 alpha-2) whose numbers you verify; empty: every region. A
    /// number of another region is `COUNTRY_NOT_ALLOWED`. Set with `PUT /company/settings`.
    pub allowed_countries: Vec<String>,
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
}

impl SuccessBody for CompanyProfile {
    const DESCRIPTION: &'static str = "Your company.";
    const RATE_LIMITED: bool = false;
}

/// Body of `PUT /company/settings`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompanySettingsRequest {
    /// The regions whose numbers you verify: ISO 3166-1 alpha-2 codes as libphonenumber
    /// assigns them to numbers (`+1 416…` is `CA`, not `US`; Jersey, Guernsey and the Isle of
    /// Man are `JE`, `GG`, `IM`, not `GB`). Empty: every region.
    #[oai(validator(max_items = 300))]
    pub allowed_countries: Vec<String>,
}

impl Validate for CompanySettingsRequest {
    fn validate(&self) -> Result<(), ApiError> {
        countries::parse_codes(&self.allowed_countries)
            .map(|_| ())
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))
    }
}

/// `PUT /company/settings`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct CompanySettings {
    /// The regions whose numbers you verify, normalised (upper case, sorted, once each);
    /// empty: every region.
    pub allowed_countries: Vec<String>,
}

impl SuccessBody for CompanySettings {
    const DESCRIPTION: &'static str = "The settings are stored, and in force at once.";
    const RATE_LIMITED: bool = false;
}

/// The error statuses of `PUT /company/settings`.
#[derive(Debug)]
pub struct SettingsErrors;

impl OperationErrors for SettingsErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: malformed body, or an `allowedCountries` code that is not a \
             region (the message names it).",
        ),
        UNAUTHORIZED,
        FORBIDDEN_TO_TEST_KEYS,
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The company's profile.
/// `POST /company/console-links`: a link that signs a browser in to the console.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ConsoleLink {
    /// Open it in a browser: it signs in to your company's console once, then stops working.
    /// Treat it as a password until it expires.
    pub url: String,
    /// When the link stops working if unused (10 minutes; RFC 3339, UTC).
    pub expires_at: Timestamp,
}

impl SuccessBody for ConsoleLink {
    const DESCRIPTION: &'static str = "A single-use sign-in link to the console.";
    const STATUS: u16 = 201;
    const RATE_LIMITED: bool = false;
}

/// Issues a single-use console sign-in link for the identity's company (a live identity
/// only: the console shows live data).
pub(crate) async fn console_link(
    state: &AppState,
    company: &AuthenticatedCompany,
) -> Result<ConsoleLink, ApiError> {
    require_live(company, "open the console")?;
    let link = truenumber_core::companies::console::create_link(&state.db, &company.company_id)
        .await
        .map_err(crate::console::console_error)?;
    tracing::info!("console sign-in link issued");
    Ok(ConsoleLink {
        url: crate::console::sign_in_url(&state.config.api_base_url, &link.token),
        expires_at: link.expires_at.into(),
    })
}

#[derive(Debug)]
pub struct ProfileApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/company", tag = "ApiTags::Company")]
impl ProfileApi {
    /// Read your company
    ///
    /// Your company's profile: name, webhook URL and the rate limits in force.
    #[oai(path = "/", method = "get", operation_id = "getCompany")]
    async fn get_company(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<CompanyProfile>, Failure<ReadErrors>> {
        authorize(&company)?;
        let row = own_row(&self.state, &company).await?;
        let policy = Overrides::from_row(&row).in_force(&self.state.config);
        Ok(Success(CompanyProfile {
            rate_limits: RateLimits {
                initiate_per_hour: policy.initiate_per_hour,
                status_per_hour: policy.status_per_hour,
                submit_per_minute: policy.submit_per_minute,
                initiate_per_number: policy.initiate_per_number,
                initiate_per_number_window_seconds: policy.initiate_per_number_window.as_secs(),
            },
            data_retention_days: policy.data_retention_days,
            deny_cooldown_seconds: policy.deny_cooldown.as_secs(),
            allowed_countries: countries::from_column(row.allowed_countries.as_deref()),
            company_id: row.company_id,
            name: row.name,
            is_active: row.is_active,
            webhook_url: row.webhook_url,
            created_at: row.created_at.into(),
        }))
    }

    /// Set your settings
    ///
    /// The countries whose numbers you verify (`allowedCountries`; empty: every region).
    /// In force at once on the node that answers, and on every node within
    /// `API_KEY_CACHE_TTL_SECONDS`. A live key only.
    #[oai(
        path = "/settings",
        method = "put",
        operation_id = "setCompanySettings"
    )]
    async fn set_settings(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<CompanySettingsRequest>,
    ) -> Result<Success<CompanySettings>, Failure<SettingsErrors>> {
        authorize(&company)?;
        let allowed_countries =
            set_allowed_countries(&self.state, &company, &req.allowed_countries).await?;
        Ok(Success(CompanySettings { allowed_countries }))
    }

    /// Open the console
    ///
    /// A single-use link, valid 10 minutes, that signs a browser in to your company's web
    /// console at `/console` (live key only).
    #[oai(
        path = "/console-links",
        method = "post",
        operation_id = "createConsoleLink"
    )]
    async fn create_console_link(
        &self,
        CompanyAuth(company): CompanyAuth,
    ) -> Result<Success<ConsoleLink>, Failure<LiveOnlyErrors>> {
        authorize(&company)?;
        Ok(Success(console_link(&self.state, &company).await?))
    }
}

/// Sets the countries the company serves (a live identity only); the codes as stored.
pub(crate) async fn set_allowed_countries(
    state: &AppState,
    company: &AuthenticatedCompany,
    codes: &[String],
) -> Result<Vec<String>, ApiError> {
    require_live(company, "change company-wide settings")?;
    let codes = countries::parse_codes(codes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.to_string()))?;
    companies::set_allowed_countries(&state.db, &company.company_id, &codes)
        .await
        .map_err(company_error)?;
    state.auth.forget_company(&company.company_id).await;
    Ok(codes)
}
