//! `console_sessions`: signed-in browsers of the company console (migration 14).

use sea_orm::entity::prelude::*;

/// A console session, stored as the SHA-256 of its cookie.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_sessions")]
pub struct Model {
    /// SHA-256 of the cookie's value, lowercase hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_hash: String,
    /// Whose console it is.
    pub company_id: String,
    /// The mode it shows and acts in.
    pub livemode: bool,
    /// The token every state-changing form carries.
    pub csrf_token: String,
    /// Signed in.
    pub created_at: DateTimeUtc,
    /// The last request (to the minute): the idle timeout counts from here.
    pub last_seen_at: DateTimeUtc,
    /// When it ends regardless of use.
    pub expires_at: DateTimeUtc,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
