//! `verification_sessions`: one per initiated verification.

use sea_orm::entity::prelude::*;

/// A verification session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "verification_sessions")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Public id (`ver_…`).
    #[sea_orm(unique)]
    pub verification_id: String,
    /// E.164.
    pub mobile_number: String,
    /// Owner.
    pub company_id: String,
    /// The company's idempotency key; unique per company.
    pub request_id: String,
    /// `pending`, `verified`, `failed` or `expired` as stored (see `effective status`).
    pub status: String,
    /// Set by submit.
    pub app_user_id: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Set when verified.
    pub verified_at: Option<DateTimeUtc>,
    /// Set on any terminal transition.
    pub completed_at: Option<DateTimeUtc>,
    /// After this instant a pending session is expired.
    pub expires_at: DateTimeUtc,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
