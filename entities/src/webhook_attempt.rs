//! `webhook_attempts`: every attempt of a delivery, numbered from 1.

use sea_orm::entity::prelude::*;

/// One attempt to deliver a webhook.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The delivery (deleted with it).
    pub delivery_id: Uuid,
    /// 1, 2, …; unique per delivery.
    pub attempt: i32,
    /// When.
    pub attempted_at: DateTimeUtc,
    /// HTTP status, if a response came.
    pub status_code: Option<i32>,
    /// How long it took.
    pub latency_ms: i32,
    /// What went wrong, if anything.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
