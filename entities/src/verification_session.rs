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
    /// As stored: a pending session past `expires_at` is still `Pending` here until swept.
    pub status: SessionStatus,
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
    /// `false` for a test key's session (migration 10): invisible to live keys and the app.
    pub livemode: bool,
    /// Two digits the app must send back when the company asked for number matching.
    pub match_code: Option<String>,
    /// How the app token that completed the session was bound to its number (migration 11);
    /// `None` while the app has not completed it.
    pub number_binding: Option<NumberBinding>,
    /// The completing token's `auth_time`: when the app's identity provider last proved the
    /// number (migration 11).
    pub phone_verified_at: Option<DateTimeUtc>,
}

/// How the app token that completed a session was bound to the session's number, as the
/// `number_binding` column stores it (its CHECK admits exactly these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum NumberBinding {
    /// The token's verified `phone_number` was the session's number.
    #[sea_orm(string_value = "app_token")]
    AppToken,
    /// The token carried no verified number: only under the development switch
    /// `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`.
    #[sea_orm(string_value = "none")]
    None,
}

impl NumberBinding {
    /// The stored text, without allocating.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AppToken => "app_token",
            Self::None => "none",
        }
    }
}

/// The lifecycle of a session, as the `status` column stores it (its CHECK constraint admits
/// exactly these). Only `Pending` ever changes, and only once. Reading any other text is a
/// decode error, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum SessionStatus {
    /// Waiting for the app.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The user confirmed the same number.
    #[sea_orm(string_value = "verified")]
    Verified,
    /// The user confirmed a different number (or the token was bound to another, or the
    /// match code was wrong).
    #[sea_orm(string_value = "failed")]
    Failed,
    /// The user said "this is not me" (migration 10).
    #[sea_orm(string_value = "denied")]
    Denied,
    /// Nobody confirmed before `expires_at`.
    #[sea_orm(string_value = "expired")]
    Expired,
}

impl SessionStatus {
    /// The stored text, without allocating (metrics labels, messages); equal to
    /// [`ActiveEnum::to_value`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
