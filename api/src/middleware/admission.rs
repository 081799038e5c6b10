//! Admission control: every operation of the versioned API waits for one of
//! `MAX_CONCURRENT_REQUESTS` slots, in arrival order (the semaphore is fair), for at most the
//! time a database connection may be waited for; past that, 503 with `Retry-After`. Under
//! overload requests wait here, not in a race for database connections that ends in pool
//! timeouts. The one rule: a path under `/api/v1/` or `/console` is admitted, except the
//! OpenAPI document and the console's stylesheet (static); probes, metrics and the docs never
//! wait.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use truenumber_core::error_code::ErrorCode;

use crate::{API_PREFIX, error::ApiError};

/// The longest a request waits for an admission slot before a 503.
const ADMISSION_TIMEOUT: Duration = truenumber_core::storage::db::ACQUIRE_TIMEOUT;

/// The slots of one node.
#[derive(Debug)]
pub(super) struct Admission {
    slots: Semaphore,
}

/// Whether a request for `path` takes a slot: every API operation, and every console page
/// (they query the same database) but its static stylesheet.
pub(super) fn applies(path: &str) -> bool {
    let api = path
        .strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.starts_with('/') && rest != "/openapi.json");
    let console =
        (path == "/console" || path.starts_with("/console/")) && path != "/console/console.css";
    api || console
}

impl Admission {
    /// `max_concurrent_requests` slots.
    pub(super) fn new(max_concurrent_requests: usize) -> Self {
        Self {
            slots: Semaphore::new(max_concurrent_requests),
        }
    }

    /// A slot for a request to `path` (none needed outside the API), waiting in arrival order
    /// at most [`ADMISSION_TIMEOUT`].
    pub(super) async fn enter(&self, path: &str) -> Result<Option<SemaphorePermit<'_>>, ApiError> {
        if !applies(path) {
            return Ok(None);
        }
        match tokio::time::timeout(ADMISSION_TIMEOUT, self.slots.acquire()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(closed)) => Err(ApiError::internal(closed)),
            Err(_) => {
                let mut err = ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "The service is busy; retry shortly",
                );
                err.retry_after = Some(1);
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::applies;

    #[test]
    fn every_api_operation_is_admitted_and_nothing_else() {
        for path in [
            "/api/v1/verification/initiate",
            "/api/v1/verification/status/ver_x",
            "/api/v1/verifications",
            "/api/v1/company",
            "/api/v1/company/api-keys",
            "/api/v1/app/verifications",
            "/api/v1/test/verifications/ver_x/complete",
            "/api/v1/nope",
            "/console",
            "/console/verifications/ver_x",
        ] {
            assert!(applies(path), "{path}");
        }
        for path in [
            "/health",
            "/health/ready",
            "/metrics",
            "/docs",
            "/",
            "/api/v1/openapi.json",
            "/api/v1",
            "/api/v10/verification/initiate",
            "/console/console.css",
            "/consoles",
        ] {
            assert!(!applies(path), "{path}");
        }
    }
}
