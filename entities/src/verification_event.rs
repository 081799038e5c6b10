//! `verification_events`: the transactional outbox, one terminal event per session.

use sea_orm::entity::prelude::*;

/// An event, written in the same statement as the session's terminal transition.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "verification_events")]
pub struct Model {
    /// `evt_…`; also the webhook's `webhook-id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `verification.completed`, or `webhook.test` (migration 9).
    pub event_type: String,
    /// The session; `None` for an event about no session (`webhook.test`).
    pub verification_id: Option<String>,
    /// Owner.
    pub company_id: String,
    /// The session's terminal status; `None` for an event about no session.
    pub status: Option<EventStatus>,
    /// The webhook body as stored by releases before migration 12; `None` since (the body is
    /// rendered from the event and its session at delivery, `truenumber_core::webhooks::body`).
    /// Nothing reads it.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub payload: Option<Json>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Set when the broker confirmed it; `None` while the relay still has to publish it.
    pub published_at: Option<DateTimeUtc>,
    /// Until when a relay holds this unpublished event (migration 5); `None` or past: free.
    pub relay_claimed_until: Option<DateTimeUtc>,
    /// `false` for a test-mode event (migration 10).
    pub livemode: bool,
}

/// The terminal status an event reports, as its `status` column stores it (its CHECK
/// constraint admits exactly these; an event is never `pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
pub enum EventStatus {
    /// The user confirmed the same number.
    #[sea_orm(string_value = "verified")]
    Verified,
    /// The user confirmed a different number.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// The user said "this is not me" (migration 10).
    #[sea_orm(string_value = "denied")]
    Denied,
    /// Nobody confirmed in time.
    #[sea_orm(string_value = "expired")]
    Expired,
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
