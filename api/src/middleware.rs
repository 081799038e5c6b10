//! The outermost middleware: request id, body limit, the JSON error shape for everything
//! poem answers by itself, and one log line per request.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};
use tracing::Instrument;
use truenumber_core::{config::IpNet, error_code::ErrorCode, observability::metrics::Metrics};

use crate::{error::ApiError, request_context, request_context::RequestContext};

/// The request-id / error-shape / access-log middleware.
#[derive(Debug, Clone)]
pub struct RequestMiddleware {
    max_body_bytes: usize,
    routes: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    https: Arc<HttpsPolicy>,
    admission: Arc<tokio::sync::Semaphore>,
    body_timeout: std::time::Duration,
    auth_failure_delay: std::time::Duration,
}

/// Whether plain HTTP is refused, and whose `X-Forwarded-Proto` is believed.
#[derive(Debug, Clone, Default)]
pub struct HttpsPolicy {
    /// `REQUIRE_HTTPS`.
    pub require: bool,
    /// `TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpNet>,
}

/// Requests under this prefix pass admission control; probes and metrics never wait.
const API_PATH_PREFIX: &str = "/api/v1/verification/";

/// `Strict-Transport-Security` on every response that went over HTTPS.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The longest a request waits for an admission slot before a 503.
const ADMISSION_TIMEOUT: std::time::Duration = truenumber_core::storage::db::ACQUIRE_TIMEOUT;

/// Whether a request announces a body (a length above zero, or chunked).
fn has_body(req: &Request) -> bool {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING)
}

impl HttpsPolicy {
    /// Whether the request arrived over TLS, here or at a trusted proxy.
    fn is_secure(&self, req: &Request) -> bool {
        if *req.scheme() == poem::http::uri::Scheme::HTTPS {
            return true;
        }
        let from_trusted = req
            .remote_addr()
            .as_socket_addr()
            .is_some_and(|a| self.trusted_proxies.iter().any(|net| net.contains(a.ip())));
        from_trusted
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }
}

/// Probes and metrics stay reachable over plain HTTP inside the deployment (load balancers
/// and Prometheus talk to nodes directly), even with `REQUIRE_HTTPS`.
fn exempt_from_https(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/") || path == "/metrics"
}

impl RequestMiddleware {
    /// With the body cap, the table of routes (for `Allow` on 405 and route labels) and the
    /// metrics to record requests in.
    pub fn new(
        max_body_bytes: usize,
        routes: RouteTable,
        metrics: Arc<Metrics>,
        https: HttpsPolicy,
        max_concurrent_requests: usize,
        body_timeout: std::time::Duration,
        auth_failure_delay: std::time::Duration,
    ) -> Self {
        Self {
            max_body_bytes,
            routes: Arc::new(routes),
            metrics,
            https: Arc::new(https),
            admission: Arc::new(tokio::sync::Semaphore::new(max_concurrent_requests)),
            body_timeout,
            auth_failure_delay,
        }
    }
}

impl<E: Endpoint> Middleware<E> for RequestMiddleware {
    type Output = RequestMiddlewareEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestMiddlewareEndpoint {
            inner,
            config: self.clone(),
        }
    }
}

/// See [`RequestMiddleware`].
#[derive(Debug)]
pub struct RequestMiddlewareEndpoint<E> {
    inner: E,
    config: RequestMiddleware,
}

/// A new request id: a UUID v4. Request ids must be unique, not secret, so the bytes come from
/// the thread-local CSPRNG (seeded by the OS) rather than a `getrandom` syscall per request.
fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::RngExt::random(&mut rand::rng());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A sane incoming request id: 1–128 characters of `[A-Za-z0-9._:-]`.
fn sane_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get("x-request-id")?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_owned())
}

impl<E: Endpoint> Endpoint for RequestMiddlewareEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let request_id = sane_request_id(&req).unwrap_or_else(new_request_id);
        let ctx = RequestContext::new(request_id.clone());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();

        let secure = self.config.https.is_secure(&req);
        // Everything logged while the request runs (a limiter warning, a database retry)
        // carries its id; the access line below is written after, with the id as a field.
        let span = tracing::info_span!("request", request_id = %request_id);
        let outcome = if self.config.https.require && !secure && !exempt_from_https(&path) {
            let mut err = ApiError::new(
                ErrorCode::HttpsRequired,
                "This API is only served over HTTPS; retry with https://",
            );
            // The body was not read, so the connection cannot carry another request.
            err.close_connection = has_body(&req);
            Err(err)
        } else {
            let admission = path
                .starts_with(API_PATH_PREFIX)
                .then_some(&*self.config.admission);
            request_context::scope(ctx.clone(), self.handle(req, &path, admission))
                .instrument(span)
                .await
        };
        // Errors become responses here, and only here: the body gets the request id, the
        // cause goes to the log line below.
        let (mut resp, error) = match outcome {
            Ok(resp) => (resp, None),
            Err(e) => {
                let mut resp = e.to_response(&request_id);
                if let Some(allow) = e.allow.clone() {
                    resp.headers_mut().insert(header::ALLOW, allow);
                }
                (resp, Some((e.code, e.cause)))
            }
        };
        // A refused credential is answered late, outside any admission slot: guessing key
        // secrets (or probing which key ids exist) runs at a few attempts a second per connection.
        if resp.status() == StatusCode::UNAUTHORIZED && !self.config.auth_failure_delay.is_zero() {
            tokio::time::sleep(self.config.auth_failure_delay).await;
        }

        let data = ctx.snapshot();
        let headers = resp.headers_mut();
        if secure {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        for (name, value) in &data.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(*name, v);
            }
        }

        let status = resp.status().as_u16();
        let elapsed = started.elapsed().as_secs_f64();
        let latency_ms = elapsed * 1000.0;
        let route = self.config.routes.route_label(&path);
        self.config
            .metrics
            .http_request(method.as_str(), route, status, elapsed);
        let company = data.company_id.as_deref().unwrap_or("");
        let (code, cause) = match &error {
            Some((code, cause)) => (code.as_str(), cause.as_deref().unwrap_or("")),
            None => ("", ""),
        };
        if status >= 500 {
            tracing::error!(request_id = %request_id, method = %method, route, path = %path,
                status, latency_ms, company_id = company, code, cause, "request failed");
        } else {
            tracing::info!(request_id = %request_id, method = %method, route, path = %path,
                status, latency_ms, company_id = company, code, "request");
            if !cause.is_empty() {
                tracing::debug!(request_id = %request_id, cause, "client error cause");
            }
        }
        Ok(resp)
    }
}

impl<E: Endpoint> RequestMiddlewareEndpoint<E> {
    async fn handle(
        &self,
        mut req: Request,
        path: &str,
        admission: Option<&tokio::sync::Semaphore>,
    ) -> Result<Response, ApiError> {
        let max = self.config.max_body_bytes;
        // Any early answer about the body leaves (part of) it unread, so the connection cannot
        // carry another request: say so, so that a pooled client does not reuse it.
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
        // The whole body is read here, capped in size and time (chunked uploads too), before
        // the request takes an admission slot: a client that sends slowly holds only its own
        // connection.
        let body_timeout = self.config.body_timeout;
        match tokio::time::timeout(body_timeout, req.take_body().into_bytes_limit(max)).await {
            Ok(Ok(bytes)) => req.set_body(bytes),
            Ok(Err(poem::error::ReadBodyError::PayloadTooLarge)) => return refuse(too_large()),
            Ok(Err(e)) => {
                return refuse(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("Unreadable body: {e}"),
                ));
            }
            Err(_) => {
                return refuse(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "The request body did not arrive within {} s",
                        body_timeout.as_secs()
                    ),
                ));
            }
        }
        // Admission in arrival order (the semaphore is fair): under overload requests wait
        // here, not in a race for database connections that ends in pool timeouts; the wait is
        // bounded like a wait for a connection.
        let _permit = match admission {
            Some(slots) => match tokio::time::timeout(ADMISSION_TIMEOUT, slots.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                Ok(Err(closed)) => return Err(ApiError::internal(closed)),
                Err(_) => {
                    let mut err = ApiError::new(
                        ErrorCode::ServiceUnavailable,
                        "The service is busy; retry shortly",
                    );
                    err.retry_after = Some(1);
                    return Err(err);
                }
            },
            None => None,
        };

        let method = req.method().clone();
        let resp = match self.inner.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => return Err(self.with_allow(ApiError::from_poem(err), path)),
        };
        match plain_error(&resp, &method) {
            Some(err) => Err(self.with_allow(err, path)),
            None => Ok(resp),
        }
    }

    /// A 405 names the methods the route has.
    fn with_allow(&self, mut err: ApiError, path: &str) -> ApiError {
        if err.code == ErrorCode::MethodNotAllowed && err.allow.is_none() {
            err.allow = self
                .config
                .routes
                .allowed(path)
                .and_then(|m| HeaderValue::from_str(&m).ok());
        }
        err
    }
}

/// Any error response that is not already our JSON (poem's plain-text bodies, a caught panic)
/// is the error of the generic code of its status.
fn plain_error(resp: &Response, method: &Method) -> Option<ApiError> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
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

/// Path templates of the API and their methods, read from the OpenAPI document, so `Allow`
/// and route labels never drift from the routes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<String>, String, String)>,
}

/// Routes outside the OpenAPI document that are labelled by their own path.
const FIXED_ROUTES: [&str; 6] = [
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/api/v1/openapi.json",
    "/docs",
];

impl RouteTable {
    /// Builds the table from an OpenAPI document whose paths live under `prefix`.
    pub fn from_spec(spec_json: &str, prefix: &str) -> Self {
        let spec = serde_json::from_str::<serde_json::Value>(spec_json).unwrap_or_default();
        let routes = spec
            .get("paths")
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
            .map(|(path, ops)| {
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                let full = format!("{prefix}{path}");
                (split(&full), methods.join(", "), full)
            })
            .collect();
        Self { routes }
    }

    fn find(&self, path: &str) -> Option<&(Vec<String>, String, String)> {
        // Called for every request: compare segment by segment without allocating.
        self.routes.iter().find(|(tpl, _, _)| {
            let mut segs = path.split('/').filter(|s| !s.is_empty());
            tpl.iter()
                .all(|t| segs.next().is_some_and(|s| t.starts_with('{') || t == s))
                && segs.next().is_none()
        })
    }

    /// The `Allow` value for a concrete path, if it matches a template.
    pub fn allowed(&self, path: &str) -> Option<String> {
        self.find(path).map(|(_, m, _)| m.clone())
    }

    /// The metrics/log label of a path: its template, a fixed route, or `unmatched`.
    pub fn route_label<'a>(&'a self, path: &'a str) -> &'a str {
        if let Some((_, _, tpl)) = self.find(path) {
            return tpl;
        }
        FIXED_ROUTES
            .iter()
            .find(|r| **r == path)
            .copied()
            .unwrap_or("unmatched")
    }
}

fn split(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_matches_templates() {
        let spec = r#"{"paths":{"/verification/status/{verificationId}":{"get":{}},
                       "/verification/initiate":{"post":{}}}}"#;
        let t = RouteTable::from_spec(spec, "/api/v1");
        assert_eq!(
            t.allowed("/api/v1/verification/status/ver_x").as_deref(),
            Some("GET")
        );
        assert_eq!(
            t.allowed("/api/v1/verification/initiate").as_deref(),
            Some("POST")
        );
        assert_eq!(t.allowed("/api/v1/verification/nope"), None);
        assert_eq!(
            t.route_label("/api/v1/verification/status/ver_x"),
            "/api/v1/verification/status/{verificationId}"
        );
        assert_eq!(t.route_label("/health/live"), "/health/live");
        assert_eq!(t.route_label("/wp-admin"), "unmatched");
        assert_eq!(
            t.route_label("/api/v1/verification/status/ver_x/extra"),
            "unmatched"
        );
        assert_eq!(t.route_label("/api/v1/verification"), "unmatched");
    }

    #[test]
    fn new_request_ids_are_distinct_uuid_v4() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
    }
}
