//! `initiation_refusals`: initiations refused by the abuse controls, counted per company,
//! mode, hour and reason (migration 13).

use sea_orm::entity::prelude::*;

/// One hour's refusals of one kind.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "initiation_refusals")]
pub struct Model {
    /// The company refused.
    #[sea_orm(primary_key, auto_increment = false)]
    pub company_id: String,
    /// The mode of the key that asked.
    #[sea_orm(primary_key, auto_increment = false)]
    pub livemode: bool,
    /// The start of the hour.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour: DateTimeUtc,
    /// Why.
    #[sea_orm(primary_key, auto_increment = false)]
    pub reason: RefusalReason,
    /// How many in that hour.
    pub refusals: i64,
}

/// Why an initiation was refused, as stored (the column's CHECK admits exactly these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum RefusalReason {
    /// Over the per-number limit (`NUMBER_RATE_LIMITED`).
    #[sea_orm(string_value = "number_rate_limited")]
    NumberRateLimited,
    /// Within the cooldown after a deny (`RECENTLY_DENIED`).
    #[sea_orm(string_value = "recently_denied")]
    RecentlyDenied,
    /// The number's holder blocked the company (`BLOCKED_BY_USER`).
    #[sea_orm(string_value = "blocked_by_user")]
    BlockedByUser,
    /// The number's region is not among the company's allowed countries
    /// (`COUNTRY_NOT_ALLOWED`).
    #[sea_orm(string_value = "country_not_allowed")]
    CountryNotAllowed,
}

impl RefusalReason {
    /// The stored text, without allocating (metric labels).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NumberRateLimited => "number_rate_limited",
            Self::RecentlyDenied => "recently_denied",
            Self::BlockedByUser => "blocked_by_user",
            Self::CountryNotAllowed => "country_not_allowed",
        }
    }
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
