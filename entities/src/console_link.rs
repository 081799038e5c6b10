//! `console_links`: single-use sign-in links to the company console (migration 14).

use sea_orm::entity::prelude::*;

/// A sign-in link, stored as the SHA-256 of its token; consumed by the one sign-in that sets
/// `used_at`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "console_links")]
pub struct Model {
    /// SHA-256 of the token, lowercase hex.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_hash: String,
    /// Whose console it opens.
    pub company_id: String,
    /// Issued.
    pub created_at: DateTimeUtc,
    /// When it stops working if unused.
    pub expires_at: DateTimeUtc,
    /// When it was used (it works once).
    pub used_at: Option<DateTimeUtc>,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
