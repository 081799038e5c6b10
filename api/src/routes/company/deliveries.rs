//! A company's webhook deliveries, self-service under `/company/deliveries` (scope
//! `management`): list (keyset-paginated), one with its attempts, redeliver one, recover the
//! failed ones of a window.
//!
//! A delivery id of another company is `DELIVERY_NOT_FOUND`, exactly as an unknown one.
//! Redeliveries are published to the queue at once; if that fails (or the node dies before),
//! the reopened deliveries are due in the database and a worker's overdue sweep sends them.

use chrono::Utc;
use poem_openapi::{
    Enum, Object, OpenApi,
    param::{Path, Query},
};
use serde::Deserialize;
use truenumber_core::{
    companies::api_keys::Scope,
    error_code::ErrorCode,
    webhooks::{
        self,
        deliveries::{self, DeliveryStatus, DeliveryView, PageAfter, RedeliverError},
    },
};
use uuid::Uuid;

use crate::{
    cursor::{decode_cursor, encode_cursor},
    error::{ApiError, db_error},
    json_body::{JsonBody, Validate},
    responses::{ErrorDoc, Failure, OperationErrors, Success, SuccessBody},
    routes::{
        ApiTags,
        company::{FORBIDDEN, SYSTEM_ERROR, UNAUTHORIZED, UNAVAILABLE},
    },
    security::{CompanyAuth, require_scope},
    state::AppState,
    timestamp::Timestamp,
};

/// How far back `recover` reaches.
const RECOVER_WINDOW: chrono::Duration = chrono::Duration::days(14);

/// Where a delivery stands: `pending` (its schedule is running), `succeeded` (a 2xx came
/// back) or `failed` (the schedule ran out, the target refused, or it answered 410).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum WebhookDeliveryStatus {
    /// Its schedule is running.
    Pending,
    /// Delivered.
    Succeeded,
    /// Given up; redeliverable.
    Failed,
}

impl From<DeliveryStatus> for WebhookDeliveryStatus {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Succeeded => Self::Succeeded,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<WebhookDeliveryStatus> for DeliveryStatus {
    fn from(s: WebhookDeliveryStatus) -> Self {
        match s {
            WebhookDeliveryStatus::Pending => Self::Pending,
            WebhookDeliveryStatus::Succeeded => Self::Succeeded,
            WebhookDeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookAttempt {
    /// 1, 2, … over all rounds of the delivery.
    pub attempt: u32,
    /// When it was made (RFC 3339, UTC).
    pub attempted_at: Timestamp,
    /// The HTTP status your endpoint answered; absent if none came.
    #[oai(skip_serializing_if_is_none)]
    pub status_code: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: u32,
    /// What went wrong (a refused target, a timeout, the start of a non-2xx body); absent on
    /// success.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

/// A webhook delivery.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The delivery's id.
    pub delivery_id: String,
    /// The event's id: the `webhook-id` header, the same on every attempt and redelivery.
    pub event_id: String,
    /// The event type: `verification.completed`, or `webhook.test`.
    pub event: String,
    /// The verification the event reports on; absent for `webhook.test`.
    #[oai(skip_serializing_if_is_none)]
    pub verification_id: Option<String>,
    // Documented on the type, so the schema is a plain `$ref`.
    pub status: WebhookDeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the latest attempt; absent if none came.
    #[oai(skip_serializing_if_is_none)]
    pub last_status_code: Option<u16>,
    /// The error of the latest attempt; absent if it succeeded or none was made.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// Created (RFC 3339, UTC).
    pub created_at: Timestamp,
    /// When the next attempt is due (pending only); absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub next_attempt_at: Option<Timestamp>,
    /// When it succeeded or failed; absent while pending.
    #[oai(skip_serializing_if_is_none)]
    pub completed_at: Option<Timestamp>,
}

impl From<DeliveryView> for WebhookDelivery {
    fn from(v: DeliveryView) -> Self {
        let d = v.delivery;
        Self {
            delivery_id: d.id.to_string(),
            event_id: d.event_id,
            event: v.event_type,
            verification_id: v.verification_id,
            status: d.status.into(),
            attempts: u32::try_from(d.attempts).unwrap_or(0),
            last_status_code: d.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: d.last_error,
            created_at: d.created_at.into(),
            next_attempt_at: d.next_attempt_at.map(Timestamp::from),
            completed_at: d.completed_at.map(Timestamp::from),
        }
    }
}

/// `GET /company/deliveries`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDeliveryList {
    /// Newest first.
    pub data: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last page. Opaque, and stable while
    /// new deliveries arrive.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

impl SuccessBody for WebhookDeliveryList {
    const DESCRIPTION: &'static str = "A page of your deliveries.";
    const RATE_LIMITED: bool = false;
}

/// `GET /company/deliveries/{deliveryId}`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct WebhookDeliveryDetail {
    /// The delivery.
    #[oai(flatten)]
    pub delivery: WebhookDelivery,
    /// Its attempts, in order.
    pub attempt_log: Vec<WebhookAttempt>,
}

impl SuccessBody for WebhookDeliveryDetail {
    const DESCRIPTION: &'static str = "The delivery with its attempts.";
    const RATE_LIMITED: bool = false;
}

/// `POST /company/deliveries/{deliveryId}/redeliver`.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct Redelivery {
    /// The delivery, pending again with a fresh retry schedule.
    pub delivery_id: String,
    /// Its event id: the same `webhook-id` as before.
    pub event_id: String,
}

impl SuccessBody for Redelivery {
    const DESCRIPTION: &'static str = "Accepted: the delivery is pending again and due now.";
    const STATUS: u16 = 202;
    const RATE_LIMITED: bool = false;
}

/// Body of `POST /company/deliveries/recover`.
#[derive(Debug, Object, Deserialize)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverRequest {
    /// Redeliver the failed deliveries created at or after this instant (RFC 3339; at most
    /// 14 days ago).
    pub since: Timestamp,
    /// ... and before this one (default: now).
    #[serde(default, deserialize_with = "crate::json_body::not_null")]
    pub until: Option<Timestamp>,
}

impl Validate for RecoverRequest {
    fn validate(&self) -> Result<(), ApiError> {
        let since = self.since.0;
        if since < Utc::now() - RECOVER_WINDOW {
            return Err(ApiError::invalid_request(
                "since",
                "must be at most 14 days ago",
            ));
        }
        if let Some(until) = self.until
            && until.0 <= since
        {
            return Err(ApiError::invalid_request("until", "must be after since"));
        }
        Ok(())
    }
}

/// `POST /company/deliveries/recover`.
#[derive(Debug, Object)]
pub struct Recovery {
    /// How many failed deliveries are pending again.
    pub count: u32,
}

impl SuccessBody for Recovery {
    const DESCRIPTION: &'static str = "Accepted: the failed deliveries of the window are \
                                       pending again and due now.";
    const STATUS: u16 = 202;
    const RATE_LIMITED: bool = false;
}

const NOT_FOUND: ErrorDoc = ErrorDoc::before_limiter(
    404,
    "`DELIVERY_NOT_FOUND` (also for another company's delivery).",
);

/// The error statuses of `GET /company/deliveries`.
#[derive(Debug)]
pub struct ListErrors;

impl OperationErrors for ListErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: `status`, `limit` or `cursor` is not valid.",
        ),
        UNAUTHORIZED,
        FORBIDDEN,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of `GET /company/deliveries/{deliveryId}`.
#[derive(Debug)]
pub struct GetErrors;

impl OperationErrors for GetErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `deliveryId` is not a UUID."),
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of redeliver.
#[derive(Debug)]
pub struct RedeliverErrors;

impl OperationErrors for RedeliverErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `deliveryId` is not a UUID."),
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        ErrorDoc::before_limiter(
            409,
            "`DELIVERY_IN_PROGRESS`: the delivery is still pending; its schedule is running.",
        ),
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The error statuses of recover.
#[derive(Debug)]
pub struct RecoverErrors;

impl OperationErrors for RecoverErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(
            400,
            "`INVALID_REQUEST`: malformed body, `since` more than 14 days ago, `until` not \
             after `since`.",
        ),
        UNAUTHORIZED,
        FORBIDDEN,
        ErrorDoc::REQUEST_TIMEOUT,
        ErrorDoc::PAYLOAD_TOO_LARGE,
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

fn parse_delivery_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid_request("deliveryId", "is not a UUID"))
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::DeliveryNotFound, "Delivery not found")
}

/// Hands reopened deliveries to the queue now; what cannot be published stays due in the
/// database for the overdue sweep.
async fn publish_all(state: &AppState, reopened: &[(String, u32)]) {
    for (event_id, e) in webhooks::publish_attempts(&state.queue, reopened).await {
        tracing::warn!(%event_id, error = %e, "redelivery not published now; the overdue sweep will");
    }
}

/// The deliveries endpoints.
#[derive(Debug)]
pub struct DeliveriesApi {
    /// Shared state.
    pub state: AppState,
}

#[OpenApi(prefix_path = "/company/deliveries", tag = "ApiTags::Company")]
impl DeliveriesApi {
    /// List your webhook deliveries
    ///
    /// Newest first, optionally of one status, a page at a time.
    #[oai(path = "/", method = "get", operation_id = "listDeliveries")]
    async fn list(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// Only deliveries in this state.
        status: Query<Option<WebhookDeliveryStatus>>,
        /// Page size, 1-100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        #[oai(validator(max_length = 200))]
        cursor: Query<Option<String>>,
    ) -> Result<Success<WebhookDeliveryList>, Failure<ListErrors>> {
        require_scope(&company, Scope::Management)?;
        let limit = limit.0.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid_request("limit", "must be 1 to 100").into());
        }
        let after = cursor.0.as_deref().map(decode_cursor).transpose()?;
        let rows = deliveries::list_page(
            &self.state.db,
            &company.company_id,
            company.livemode(),
            status.0.map(DeliveryStatus::from),
            u64::from(limit) + 1,
            after,
        )
        .await
        .map_err(db_error)?;
        let more = rows.len() > limit as usize;
        let page: Vec<DeliveryView> = rows.into_iter().take(limit as usize).collect();
        let next_cursor = more.then(|| page.last()).flatten().map(|last| {
            encode_cursor(PageAfter {
                created_at: last.delivery.created_at,
                id: last.delivery.id,
            })
        });
        Ok(Success(WebhookDeliveryList {
            data: page.into_iter().map(WebhookDelivery::from).collect(),
            next_cursor,
        }))
    }

    /// Read one webhook delivery
    ///
    /// The delivery with every attempt: when, the status code, latency and error.
    #[oai(path = "/:deliveryId", method = "get", operation_id = "getDelivery")]
    async fn get(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The delivery's id.
        #[oai(name = "deliveryId", validator(max_length = 64))]
        delivery_id: Path<String>,
    ) -> Result<Success<WebhookDeliveryDetail>, Failure<GetErrors>> {
        require_scope(&company, Scope::Management)?;
        let id = parse_delivery_id(&delivery_id.0)?;
        let view = deliveries::find_for_company(
            &self.state.db,
            &company.company_id,
            company.livemode(),
            id,
        )
        .await
        .map_err(db_error)?
        .ok_or_else(not_found)?;
        let attempts = deliveries::attempts(&self.state.db, id)
            .await
            .map_err(db_error)?;
        Ok(Success(WebhookDeliveryDetail {
            delivery: view.into(),
            attempt_log: attempts
                .into_iter()
                .map(|a| WebhookAttempt {
                    attempt: u32::try_from(a.attempt).unwrap_or(0),
                    attempted_at: a.attempted_at.into(),
                    status_code: a.status_code.and_then(|c| u16::try_from(c).ok()),
                    latency_ms: u32::try_from(a.latency_ms).unwrap_or(0),
                    error: a.error,
                })
                .collect(),
        }))
    }

    /// Redeliver a webhook delivery
    ///
    /// A finished delivery (succeeded or failed) goes out again with a fresh retry schedule
    /// and the same `webhook-id`.
    #[oai(
        path = "/:deliveryId/redeliver",
        method = "post",
        operation_id = "redeliverDelivery"
    )]
    async fn redeliver(
        &self,
        CompanyAuth(company): CompanyAuth,
        /// The delivery's id.
        #[oai(name = "deliveryId", validator(max_length = 64))]
        delivery_id: Path<String>,
    ) -> Result<Success<Redelivery>, Failure<RedeliverErrors>> {
        require_scope(&company, Scope::Management)?;
        let (delivery_id, event_id) = redeliver(&self.state, &company, &delivery_id.0).await?;
        Ok(Success(Redelivery {
            delivery_id,
            event_id,
        }))
    }

    /// Recover failed webhook deliveries
    ///
    /// Every failed delivery created in the window goes out again with a fresh schedule
    /// (after an outage of your endpoint, for instance).
    #[oai(path = "/recover", method = "post", operation_id = "recoverDeliveries")]
    async fn recover(
        &self,
        CompanyAuth(company): CompanyAuth,
        JsonBody(req): JsonBody<RecoverRequest>,
    ) -> Result<Success<Recovery>, Failure<RecoverErrors>> {
        require_scope(&company, Scope::Management)?;
        let until = req.until.map_or_else(Utc::now, |t| t.0);
        let count = recover(&self.state, &company, req.since.0, until).await?;
        Ok(Success(Recovery { count }))
    }
}

/// Redelivers the identity's finished delivery `delivery_id`; its id and event id.
pub(crate) async fn redeliver(
    state: &AppState,
    company: &truenumber_core::companies::api_keys::AuthenticatedCompany,
    delivery_id: &str,
) -> Result<(String, String), ApiError> {
    let id = parse_delivery_id(delivery_id)?;
    let reopened =
        deliveries::redeliver_one(&state.db, &company.company_id, company.livemode(), id)
            .await
            .map_err(|e| match e {
                RedeliverError::NotFound => not_found(),
                RedeliverError::InProgress => ApiError::new(
                    ErrorCode::DeliveryInProgress,
                    "The delivery is still pending; its retry schedule is running",
                ),
                RedeliverError::Db(db) => db_error(db),
            })?;
    publish_all(state, std::slice::from_ref(&reopened)).await;
    tracing::info!(delivery_id = %id, event_id = %reopened.0, "delivery redelivered");
    Ok((id.to_string(), reopened.0))
}

/// Sends every failed delivery of the identity created in `[since, until)` again; how many.
pub(crate) async fn recover(
    state: &AppState,
    company: &truenumber_core::companies::api_keys::AuthenticatedCompany,
    since: chrono::DateTime<Utc>,
    until: chrono::DateTime<Utc>,
) -> Result<u32, ApiError> {
    let reopened = deliveries::recover_failed(
        &state.db,
        &company.company_id,
        company.livemode(),
        since,
        until,
    )
    .await
    .map_err(db_error)?;
    let count = u32::try_from(reopened.len()).unwrap_or(u32::MAX);
    tracing::info!(count, "failed deliveries recovered");
    // Publishing a large batch must not hold the response: the deliveries are due in the
    // database already, so a node that dies meanwhile loses nothing.
    let state = state.clone();
    tokio::spawn(async move { publish_all(&state, &reopened).await });
    Ok(count)
}
