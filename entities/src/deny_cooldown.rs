//! `deny_cooldowns`: the last "not me" of a number for a company and mode (migration 13).

use sea_orm::entity::prelude::*;

/// A deny that cools the company down for this number: initiate is refused until
/// `denied_at` + the company's cooldown. Written with the deny; deleted by the retention sweep
/// once the cooldown is over.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deny_cooldowns")]
pub struct Model {
    /// The company denied.
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: String,
    /// The mode of the denied session.
    #[sea_orm(primary_key, auto_increment = false)]
    pub livemode: bool,
    /// The number (E.164).
    #[sea_orm(primary_key, auto_increment = false)]
    pub mobile_number: String,
    /// The last deny.
    pub denied_at: DateTimeUtc,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
