//! The request body, read whole before the handler runs: capped at `MAX_BODY_BYTES` (declared
//! or streamed) and in time (`HTTP_BODY_TIMEOUT_SECONDS`), so a client that sends slowly holds
//! only its own connection, never an admission slot or a database connection.

use std::time::Duration;

use poem::{Request, http::header};
use truenumber_core::error_code::ErrorCode;

use crate::error::ApiError;

/// Reads the whole body into the request. Any refusal leaves (part of) the body unread, so it
/// asks for the connection to be closed (a pooled client must not reuse it).
pub(super) async fn read_whole(
    req: &mut Request,
    max: usize,
    timeout: Duration,
) -> Result<(), ApiError> {
    let refuse = |mut err: ApiError| {
        err.close_connection = true;
        Err(err)
    };
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("Request body exceeds {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return refuse(too_large());
    }
    match tokio::time::timeout(timeout, req.take_body().into_bytes_limit(max)).await {
        Ok(Ok(bytes)) => {
            req.set_body(bytes);
            Ok(())
        }
        Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => refuse(too_large()),
        Ok(Err(e)) => refuse(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Unreadable body: {e}"),
        )),
        Err(_) => refuse(ApiError::new(
            ErrorCode::RequestTimeout,
            format!(
                "The request body did not arrive within {} s",
                timeout.as_secs()
            ),
        )),
    }
}
