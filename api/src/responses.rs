//! What an operation answers, as the OpenAPI document shows it: [`Success`] for its 200 and
//! [`Failure`] for the error statuses it lists in an [`OperationErrors`] table.
//!
//! A handler returns `Result<Success<T>, Failure<E>>` and uses `?` on [`ApiError`]. An error
//! leaves the operation as a `poem::Error`; the outermost middleware writes its body and headers
//! (request id, `Retry-After`) and logs its cause, so nothing here has a side effect. The
//! response headers are documented once, below, and attached by status.

use std::marker::PhantomData;

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiResponse,
    payload::{Json, Payload},
    registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::{ToJSON, Type},
};

use crate::error::{ApiError, ErrorBody};

/// One documented response header.
struct HeaderDoc {
    name: &'static str,
    description: &'static str,
}

const REQUEST_ID: HeaderDoc = HeaderDoc {
    name: "X-Request-Id",
    description: "The id of this request (a sane incoming `X-Request-Id` of 1-128 characters \
                  `[A-Za-z0-9._:-]` is kept); also in error bodies. Quote it to support.",
};
const RATE_LIMIT_POLICY: HeaderDoc = HeaderDoc {
    name: "RateLimit-Policy",
    description: "The limit this request counted against (IETF httpapi draft): policy name, \
                  q = quota, w = window in seconds, e.g. `\"initiate\";q=100;w=3600`. Sent when \
                  the request reached the rate limiter.",
};
const RATE_LIMIT: HeaderDoc = HeaderDoc {
    name: "RateLimit",
    description: "What is left of that limit (IETF httpapi draft): policy name, r = remaining, \
                  t = seconds until one more is allowed, e.g. `\"initiate\";r=42;t=1800`. Sent \
                  when the request reached the rate limiter.",
};
const RETRY_AFTER: HeaderDoc = HeaderDoc {
    name: "Retry-After",
    description: "Whole seconds to wait before a retry can succeed.",
};

impl HeaderDoc {
    fn meta(&self, required: bool, schema: MetaSchemaRef) -> MetaHeader {
        MetaHeader {
            name: self.name.to_owned(),
            description: Some(self.description.to_owned()),
            required,
            deprecated: false,
            schema,
        }
    }
}

/// The headers of a response with `status`: `X-Request-Id` always; the rate-limit pair when
/// the request may have reached the limiter (never promised: the limiter may be off or
/// failing open); `Retry-After` on every 429 and 503.
fn headers(status: u16, after_limiter: bool) -> Vec<MetaHeader> {
    let mut headers = vec![REQUEST_ID.meta(true, String::schema_ref())];
    if after_limiter {
        headers.push(RATE_LIMIT_POLICY.meta(false, String::schema_ref()));
        headers.push(RATE_LIMIT.meta(false, String::schema_ref()));
    }
    if matches!(status, 429 | 503) {
        headers.push(RETRY_AFTER.meta(true, u32::schema_ref()));
    }
    headers
}

fn json_content(schema: MetaSchemaRef) -> Vec<MetaMediaType> {
    vec![MetaMediaType {
        content_type: <Json<ErrorBody> as Payload>::CONTENT_TYPE,
        schema,
    }]
}

/// A success body and what its response means (the description in the document).
pub trait SuccessBody: Type + ToJSON + Send {
    /// The response's description.
    const DESCRIPTION: &'static str;
    /// Its status: 200 unless the operation creates something (201) or accepts work (202).
    const STATUS: u16 = 200;
    /// Whether the operation counts against a rate limit before it succeeds (the verification
    /// endpoints), so the rate-limit headers may be on it.
    const RATE_LIMITED: bool = true;
}

/// A success with a JSON body, its status and headers as [`SuccessBody`] says.
#[derive(Debug)]
pub struct Success<T>(pub T);

impl<T: SuccessBody> ApiResponse for Success<T> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: T::DESCRIPTION,
                status: Some(T::STATUS),
                status_range: None,
                content: json_content(T::schema_ref()),
                headers: headers(T::STATUS, T::RATE_LIMITED),
            }],
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: SuccessBody> IntoResponse for Success<T> {
    fn into_response(self) -> Response {
        let status = poem::http::StatusCode::from_u16(T::STATUS).unwrap_or_default();
        Json(self.0).with_status(status).into_response()
    }
}

/// `204 No Content`: done, nothing to say (deletions). Not rate-limited.
#[derive(Debug)]
pub struct NoContent;

impl ApiResponse for NoContent {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: vec![MetaResponse {
                description: "Done.",
                status: Some(204),
                status_range: None,
                content: vec![],
                headers: headers(204, false),
            }],
        }
    }

    fn register(_: &mut Registry) {}
}

impl IntoResponse for NoContent {
    fn into_response(self) -> Response {
        poem::http::StatusCode::NO_CONTENT.into_response()
    }
}

/// One error status of an operation: what it means there, and whether the request may have
/// passed the rate limiter by then (it runs after authentication and body parsing).
#[derive(Debug, Clone, Copy)]
pub struct ErrorDoc {
    /// The HTTP status.
    pub status: u16,
    /// The codes it carries here, for the document.
    pub description: &'static str,
    /// Whether the rate-limit headers may be on it.
    pub after_limiter: bool,
}

impl ErrorDoc {
    /// An error answered before the limiter runs (authentication, an unparseable request).
    pub const fn before_limiter(status: u16, description: &'static str) -> Self {
        Self {
            status,
            description,
            after_limiter: false,
        }
    }

    /// An error that may be answered after the limiter ran.
    pub const fn after_limiter(status: u16, description: &'static str) -> Self {
        Self {
            status,
            description,
            after_limiter: true,
        }
    }

    /// `PAYLOAD_TOO_LARGE`, refused before anything else.
    pub const PAYLOAD_TOO_LARGE: Self = Self::before_limiter(
        413,
        "`PAYLOAD_TOO_LARGE`: the body is over `MAX_BODY_BYTES` (the connection is closed).",
    );
    /// `REQUEST_TIMEOUT`: the body was too slow, refused before anything else.
    pub const REQUEST_TIMEOUT: Self = Self::before_limiter(
        408,
        "`REQUEST_TIMEOUT`: the body did not arrive within `HTTP_BODY_TIMEOUT_SECONDS` (the \
         connection is closed).",
    );
    /// `RATE_LIMIT_EXCEEDED`.
    pub const RATE_LIMITED: Self =
        Self::after_limiter(429, "`RATE_LIMIT_EXCEEDED`; see `Retry-After`.");
    /// `SYSTEM_ERROR`.
    pub const SYSTEM_ERROR: Self = Self::after_limiter(
        500,
        "`SYSTEM_ERROR`: a bug; the details are only in the log, under the request id.",
    );
    /// `SERVICE_UNAVAILABLE`.
    pub const UNAVAILABLE: Self = Self::after_limiter(
        503,
        "`SERVICE_UNAVAILABLE`: a dependency is unreachable; see `Retry-After`.",
    );
}

/// The error statuses one operation can answer with: its row in the document.
pub trait OperationErrors: Send + Sync + 'static {
    /// Every error status of the operation, in ascending order.
    const STATUSES: &'static [ErrorDoc];

    /// Whether `status` is listed.
    fn documents(status: u16) -> bool {
        Self::STATUSES.iter().any(|s| s.status == status)
    }
}

/// An [`ApiError`] leaving an operation whose error statuses are `E`'s.
#[derive(Debug)]
pub struct Failure<E>(ApiError, PhantomData<E>);

impl<E> From<ApiError> for Failure<E> {
    fn from(e: ApiError) -> Self {
        Self(e, PhantomData)
    }
}

impl<E: OperationErrors> From<Failure<E>> for poem::Error {
    fn from(Failure(e, _): Failure<E>) -> Self {
        // The document must list every status an operation answers with; the error keeps its
        // real status either way (a test or the conformance run finds the gap).
        debug_assert!(
            E::documents(e.code.http_status()),
            "{} is not in {}",
            e.code,
            std::any::type_name::<E>()
        );
        e.into()
    }
}

impl<E: OperationErrors> ApiResponse for Failure<E> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: E::STATUSES
                .iter()
                .map(|s| MetaResponse {
                    description: s.description,
                    status: Some(s.status),
                    status_range: None,
                    content: json_content(ErrorBody::schema_ref()),
                    headers: headers(s.status, s.after_limiter),
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}
