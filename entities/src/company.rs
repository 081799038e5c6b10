//! `companies`: the tenants.

use sea_orm::entity::prelude::*;

/// A company that verifies its users' numbers.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "companies")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The public company id (`comp_abc`), unique.
    #[sea_orm(unique)]
    pub company_id: String,
    /// Display name.
    pub name: String,
    /// Where webhooks go, if anywhere.
    pub webhook_url: Option<String>,
    /// Standard Webhooks signing secret (`whsec_…`).
    pub webhook_secret: String,
    /// Inactive companies are refused with `COMPANY_INACTIVE`.
    pub is_active: bool,
    /// Overrides `RATE_LIMIT_INITIATE_PER_HOUR` for this company.
    pub rate_limit_initiate_per_hour: Option<i32>,
    /// Overrides `RATE_LIMIT_STATUS_PER_HOUR` for this company.
    pub rate_limit_status_per_hour: Option<i32>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
    /// The secret a rotation replaced; it still signs until
    /// `previous_webhook_secret_expires_at`.
    pub previous_webhook_secret: Option<String>,
    /// When the previous secret stops signing.
    pub previous_webhook_secret_expires_at: Option<DateTimeUtc>,
    /// This company's retention window in days (1–3650); `None`: `DATA_RETENTION_DAYS`.
    pub data_retention_days: Option<i32>,
    /// Overrides `RATE_LIMIT_INITIATE_PER_NUMBER` (migration 13).
    pub rate_limit_initiate_per_number: Option<i32>,
    /// Overrides `RATE_LIMIT_INITIATE_PER_NUMBER_WINDOW_SECONDS` (migration 13).
    pub rate_limit_initiate_per_number_window_seconds: Option<i32>,
    /// Overrides `DENY_COOLDOWN_SECONDS` (migration 13).
    pub deny_cooldown_seconds: Option<i32>,
    /// The regions (ISO 3166-1 alpha-2, comma-separated) whose numbers the company may verify;
    /// `None` or empty: every region (migration 13).
    pub allowed_countries: Option<String>,
}

impl Model {
    /// The previous secret if it still signs at `now`.
    pub fn previous_secret_at(&self, now: DateTimeUtc) -> Option<&str> {
        match (
            &self.previous_webhook_secret,
            self.previous_webhook_secret_expires_at,
        ) {
            (Some(secret), Some(until)) if until > now => Some(secret),
            _ => None,
        }
    }
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
