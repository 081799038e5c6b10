//! `webhook_deliveries`: one per (event, company), with the state of its retry schedule.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// The delivery of one event to one company's webhook URL.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    /// Delivery id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The event (the webhook's `webhook-id`).
    pub event_id: String,
    /// The company.
    pub company_id: String,
    /// The URL of the latest attempt.
    pub url: String,
    /// Where the delivery stands.
    pub status: DeliveryStatus,
    /// Attempts made so far (over all rounds).
    pub attempts: i32,
    /// Attempts made before the latest redelivery; the retry schedule restarts after it.
    pub round_start: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTimeUtc>,
    /// HTTP status of the latest attempt.
    pub last_status_code: Option<i32>,
    /// Error of the latest attempt.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
    /// Finished (succeeded or failed).
    pub completed_at: Option<DateTimeUtc>,
    /// The mode of its event (migration 10): a key lists only its own mode's deliveries.
    pub livemode: bool,
}

/// Where a delivery stands, as its `status` column stores it (its CHECK constraint admits
/// exactly these). Serialized as stored, for the operator commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// More attempts to come (or the first one).
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Delivered.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Given up; redeliverable.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl DeliveryStatus {
    /// The stored value (`pending`, `succeeded`, `failed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
