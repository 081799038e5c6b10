//! `GET /company`: the company's profile.

use poem_openapi::{Object, OpenApi};
use truenumber_core::companies::policy::Overrides;

use super::{ReadErrors, authorize, own_row};
use crate::{
    responses::{Failure, Success, SuccessBody},
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
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
}

impl SuccessBody for CompanyProfile {
    const DESCRIPTION: &'static str = "Your company.";
    const RATE_LIMITED: bool = false;
}

/// The company's profile.
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
            },
            data_retention_days: policy.data_retention_days,
            company_id: row.company_id,
            name: row.name,
            is_active: row.is_active,
            webhook_url: row.webhook_url,
            created_at: row.created_at.into(),
        }))
    }
}
