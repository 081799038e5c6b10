//! The public error codes and their HTTP statuses: one table, part of the API contract.
//!
//! A code, once published, never changes its name or status.

/// Every machine-readable error code the API can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: malformed JSON, a missing field, a wrong type, a value out of bounds.
    InvalidRequest,
    /// 400: the mobile number is not a valid mobile-capable number.
    InvalidNumber,
    /// 400: the confirmed number does not match the session's; the session is now `failed`.
    NumberMismatch,
    /// 400: number matching was on and the match code was wrong or missing; the session is
    /// now `failed`.
    MatchCodeMismatch,
    /// 400: a webhook URL that is malformed or points where webhooks may not go (SSRF).
    InvalidWebhookUrl,
    /// 400: the number's region is not among the company's allowed countries.
    CountryNotAllowed,
    /// 401: missing, malformed, unknown or revoked credentials.
    Unauthorized,
    /// 403: the app token belongs to another app user.
    Forbidden,
    /// 403: the company behind the API key is deactivated.
    CompanyInactive,
    /// 403: the request did not arrive over HTTPS and `REQUIRE_HTTPS` is on.
    HttpsRequired,
    /// 403: the API key lacks the scope the operation needs.
    InsufficientScope,
    /// 403: a live key called a test-mode operation.
    TestModeOnly,
    /// 403: a test key asked for what only a live key may do (company-wide settings, live
    /// keys).
    LiveModeOnly,
    /// 403: the app token binds no verified number (`phone_number`), which live sessions
    /// require.
    NumberBindingRequired,
    /// 403: the number's holder said "not me" to this company within its deny cooldown.
    RecentlyDenied,
    /// 403: the number's holder has blocked this company.
    BlockedByUser,
    /// 404: the company is not registered (or not the caller's).
    CompanyNotFound,
    /// 404: no such verification session for this caller.
    SessionNotFound,
    /// 404: no such route.
    NotFound,
    /// 404: no such API key of the caller's company.
    ApiKeyNotFound,
    /// 404: no such webhook delivery of the caller's company.
    DeliveryNotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the `requestId` was already used with a different number.
    DuplicateRequest,
    /// 409: the session is already verified or failed.
    SessionAlreadyCompleted,
    /// 409: the API key is revoked or expired, so it cannot be rolled.
    ApiKeyRevoked,
    /// 409: the company already holds the most usable API keys allowed.
    ApiKeyLimitReached,
    /// 409: the webhook delivery is still pending; it cannot be redelivered yet.
    DeliveryInProgress,
    /// 409: the company has no webhook URL to send a test event to.
    WebhookNotConfigured,
    /// 410: the session is past `expiresAt`.
    SessionExpired,
    /// 408: the body did not arrive within `HTTP_BODY_TIMEOUT_SECONDS`.
    RequestTimeout,
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge,
    /// 429: over the rate limit; see `Retry-After`.
    RateLimitExceeded,
    /// 429: over the per-number initiation limit; see `Retry-After`.
    NumberRateLimited,
    /// 500: an internal error (details are only in the logs).
    SystemError,
    /// 503: a dependency is unavailable; try again after `Retry-After`.
    ServiceUnavailable,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 35] = [
        Self::InvalidRequest,
        Self::InvalidNumber,
        Self::NumberMismatch,
        Self::MatchCodeMismatch,
        Self::InvalidWebhookUrl,
        Self::CountryNotAllowed,
        Self::Unauthorized,
        Self::Forbidden,
        Self::CompanyInactive,
        Self::HttpsRequired,
        Self::InsufficientScope,
        Self::TestModeOnly,
        Self::LiveModeOnly,
        Self::NumberBindingRequired,
        Self::RecentlyDenied,
        Self::BlockedByUser,
        Self::CompanyNotFound,
        Self::SessionNotFound,
        Self::NotFound,
        Self::ApiKeyNotFound,
        Self::DeliveryNotFound,
        Self::MethodNotAllowed,
        Self::DuplicateRequest,
        Self::SessionAlreadyCompleted,
        Self::ApiKeyRevoked,
        Self::ApiKeyLimitReached,
        Self::DeliveryInProgress,
        Self::WebhookNotConfigured,
        Self::SessionExpired,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::RateLimitExceeded,
        Self::NumberRateLimited,
        Self::SystemError,
        Self::ServiceUnavailable,
    ];

    /// The code as sent in the `code` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidNumber => "INVALID_NUMBER",
            Self::NumberMismatch => "NUMBER_MISMATCH",
            Self::MatchCodeMismatch => "MATCH_CODE_MISMATCH",
            Self::InvalidWebhookUrl => "INVALID_WEBHOOK_URL",
            Self::CountryNotAllowed => "COUNTRY_NOT_ALLOWED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::CompanyInactive => "COMPANY_INACTIVE",
            Self::HttpsRequired => "HTTPS_REQUIRED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::TestModeOnly => "TEST_MODE_ONLY",
            Self::LiveModeOnly => "LIVE_MODE_ONLY",
            Self::NumberBindingRequired => "NUMBER_BINDING_REQUIRED",
            Self::RecentlyDenied => "RECENTLY_DENIED",
            Self::BlockedByUser => "BLOCKED_BY_USER",
            Self::CompanyNotFound => "COMPANY_NOT_FOUND",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::NotFound => "NOT_FOUND",
            Self::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            Self::DeliveryNotFound => "DELIVERY_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::DuplicateRequest => "DUPLICATE_REQUEST",
            Self::SessionAlreadyCompleted => "SESSION_ALREADY_COMPLETED",
            Self::ApiKeyRevoked => "API_KEY_REVOKED",
            Self::ApiKeyLimitReached => "API_KEY_LIMIT_REACHED",
            Self::DeliveryInProgress => "DELIVERY_IN_PROGRESS",
            Self::WebhookNotConfigured => "WEBHOOK_NOT_CONFIGURED",
            Self::SessionExpired => "SESSION_EXPIRED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::NumberRateLimited => "NUMBER_RATE_LIMITED",
            Self::SystemError => "SYSTEM_ERROR",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    /// The HTTP status that carries this code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest
            | Self::InvalidNumber
            | Self::NumberMismatch
            | Self::MatchCodeMismatch
            | Self::InvalidWebhookUrl
            | Self::CountryNotAllowed => 400,
            Self::Unauthorized => 401,
            Self::Forbidden
            | Self::CompanyInactive
            | Self::HttpsRequired
            | Self::InsufficientScope
            | Self::TestModeOnly
            | Self::LiveModeOnly
            | Self::NumberBindingRequired
            | Self::RecentlyDenied
            | Self::BlockedByUser => 403,
            Self::CompanyNotFound
            | Self::SessionNotFound
            | Self::NotFound
            | Self::ApiKeyNotFound
            | Self::DeliveryNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::DuplicateRequest
            | Self::SessionAlreadyCompleted
            | Self::ApiKeyRevoked
            | Self::ApiKeyLimitReached
            | Self::DeliveryInProgress
            | Self::WebhookNotConfigured => 409,
            Self::SessionExpired => 410,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::RateLimitExceeded | Self::NumberRateLimited => 429,
            Self::SystemError => 500,
            Self::ServiceUnavailable => 503,
        }
    }

    /// The code a bare HTTP status stands for, when nothing more specific is known
    /// (poem's own errors: unknown route, wrong method, unreadable body).
    pub const fn for_status(status: u16) -> Self {
        match status {
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            408 => Self::RequestTimeout,
            413 => Self::PayloadTooLarge,
            429 => Self::RateLimitExceeded,
            503 => Self::ServiceUnavailable,
            400..=499 => Self::InvalidRequest,
            _ => Self::SystemError,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_table_is_the_published_contract() {
        let table: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.http_status()))
            .collect();
        assert_eq!(
            table,
            vec![
                ("INVALID_REQUEST", 400),
                ("INVALID_NUMBER", 400),
                ("NUMBER_MISMATCH", 400),
                ("MATCH_CODE_MISMATCH", 400),
                ("INVALID_WEBHOOK_URL", 400),
                ("COUNTRY_NOT_ALLOWED", 400),
                ("UNAUTHORIZED", 401),
                ("FORBIDDEN", 403),
                ("COMPANY_INACTIVE", 403),
                ("HTTPS_REQUIRED", 403),
                ("INSUFFICIENT_SCOPE", 403),
                ("TEST_MODE_ONLY", 403),
                ("LIVE_MODE_ONLY", 403),
                ("NUMBER_BINDING_REQUIRED", 403),
                ("RECENTLY_DENIED", 403),
                ("BLOCKED_BY_USER", 403),
                ("COMPANY_NOT_FOUND", 404),
                ("SESSION_NOT_FOUND", 404),
                ("NOT_FOUND", 404),
                ("API_KEY_NOT_FOUND", 404),
                ("DELIVERY_NOT_FOUND", 404),
                ("METHOD_NOT_ALLOWED", 405),
                ("DUPLICATE_REQUEST", 409),
                ("SESSION_ALREADY_COMPLETED", 409),
                ("API_KEY_REVOKED", 409),
                ("API_KEY_LIMIT_REACHED", 409),
                ("DELIVERY_IN_PROGRESS", 409),
                ("WEBHOOK_NOT_CONFIGURED", 409),
                ("SESSION_EXPIRED", 410),
                ("REQUEST_TIMEOUT", 408),
                ("PAYLOAD_TOO_LARGE", 413),
                ("RATE_LIMIT_EXCEEDED", 429),
                ("NUMBER_RATE_LIMITED", 429),
                ("SYSTEM_ERROR", 500),
                ("SERVICE_UNAVAILABLE", 503),
            ]
        );
    }

    #[test]
    fn names_are_unique_and_screaming_snake() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        );
    }

    #[test]
    fn bare_statuses_map_to_generic_codes() {
        assert_eq!(ErrorCode::for_status(404), ErrorCode::NotFound);
        assert_eq!(ErrorCode::for_status(405), ErrorCode::MethodNotAllowed);
        assert_eq!(ErrorCode::for_status(413), ErrorCode::PayloadTooLarge);
        assert_eq!(ErrorCode::for_status(408), ErrorCode::RequestTimeout);
        assert_eq!(ErrorCode::for_status(415), ErrorCode::InvalidRequest);
        assert_eq!(ErrorCode::for_status(400), ErrorCode::InvalidRequest);
        assert_eq!(ErrorCode::for_status(502), ErrorCode::SystemError);
        for code in ErrorCode::ALL {
            if code != ErrorCode::InvalidRequest && code.http_status() >= 500 {
                assert_eq!(ErrorCode::for_status(code.http_status()), code);
            }
        }
    }
}
