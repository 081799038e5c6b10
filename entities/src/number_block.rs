//! `number_blocks`: the holder of a number blocks a company (migration 13).

use sea_orm::entity::prelude::*;

/// A person's block of a company: the company may not initiate for this number, and its
/// pending sessions leave the number's pending list. Deleted when the person unblocks.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "number_blocks")]
pub struct Model {
    /// The number (E.164) whose holder blocked the company.
    #[sea_orm(primary_key, auto_increment = false)]
    pub mobile_number: String,
    /// The company blocked.
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: String,
    /// When.
    pub blocked_at: DateTimeUtc,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
