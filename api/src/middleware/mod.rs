//! The outermost middleware, which every request passes: it owns the request id, turns every
//! error into the one JSON shape and logs one line per request; the other concerns are one
//! file each, applied in this order:
//!
//! 1. [`https`]: `REQUIRE_HTTPS` and HSTS;
//! 2. [`body`]: the whole body read, capped in size and time;
//! 3. [`admission`]: a slot for every `/api/v1` operation, in arrival order;
//! 4. the route; then [`errors`]: poem's own plain-text errors in the JSON shape, with
//!    [`routes`] naming the methods of a 405 and the route label of the access log.

mod admission;
mod body;
mod errors;
mod https;
mod request_id;
mod routes;

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderValue, StatusCode, header},
};
use tracing::Instrument;
use truenumber_core::{error_code::ErrorCode, observability::metrics::Metrics};

use self::{admission::Admission, errors::plain_error, https::has_body};
pub use self::{https::HttpsPolicy, routes::RouteTable};
use crate::{error::ApiError, request_context, request_context::RequestContext};

/// The request-id / error-shape / access-log middleware.
#[derive(Debug, Clone)]
pub struct RequestMiddleware {
    max_body_bytes: usize,
    routes: Arc<RouteTable>,
    metrics: Arc<Metrics>,
    https: Arc<HttpsPolicy>,
    admission: Arc<Admission>,
    body_timeout: std::time::Duration,
    auth_failure_delay: std::time::Duration,
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
            admission: Arc::new(Admission::new(max_concurrent_requests)),
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

impl<E: Endpoint> Endpoint for RequestMiddlewareEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let started = Instant::now();
        let request_id = request_id::for_request(&req);
        let ctx = RequestContext::new(request_id.clone());
        let method = req.method().clone();
        let path = req.uri().path().to_owned();

        let secure = self.config.https.is_secure(&req);
        // Everything logged while the request runs (a limiter warning, a database retry)
        // carries its id; the access line below is written after, with the id as a field.
        let span = tracing::info_span!("request", request_id = %request_id);
        let outcome = if self.config.https.refuses(secure, &path) {
            let mut err = ApiError::new(
                ErrorCode::HttpsRequired,
                "This API is only served over HTTPS; retry with https://",
            );
            // The body was not read, so the connection cannot carry another request.
            err.close_connection = has_body(&req);
            Err(err)
        } else {
            request_context::scope(ctx.clone(), self.handle(req, &path))
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
                HeaderValue::from_static(https::HSTS),
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
    async fn handle(&self, mut req: Request, path: &str) -> Result<Response, ApiError> {
        body::read_whole(
            &mut req,
            self.config.max_body_bytes,
            self.config.body_timeout,
        )
        .await?;
        let _permit = self.config.admission.enter(path).await?;
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
