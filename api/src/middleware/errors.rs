//! The one JSON error shape for what poem answers by itself: a plain-text error (unknown
//! route, wrong method, unreadable JSON, a caught panic) becomes the error of its status's
//! generic code.

use poem::{
    Response,
    http::{Method, header},
};
use truenumber_core::error_code::ErrorCode;

use crate::error::ApiError;

/// Any error response that is not already our JSON (poem's plain-text bodies, a caught panic)
/// is the error of the generic code of its status.
pub(super) fn plain_error(resp: &Response, method: &Method) -> Option<ApiError> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    // Our JSON, and the console's HTML pages (which carry their own message), stay as they are.
    let ours = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if ours {
        return None;
    }
    let code = ErrorCode::for_status(status.as_u16());
    let message = match code {
        ErrorCode::NotFound => "No such route".to_owned(),
        ErrorCode::MethodNotAllowed => format!("Method {method} is not allowed on this route"),
        ErrorCode::SystemError => "An internal error occurred".to_owned(),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    };
    let mut err = ApiError::new(code, message);
    if code == ErrorCode::SystemError {
        err.cause = Some(format!("plain {status} response from an inner layer"));
    }
    err.allow = resp.headers().get(header::ALLOW).cloned();
    Some(err)
}
