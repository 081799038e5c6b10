//! Per-request context in a task-local: the request id, and what handlers tell the outermost
//! middleware (the error's cause for the log, `Retry-After`, the company, rate-limit headers).

use std::sync::{Arc, Mutex};

use truenumber_core::error_code::ErrorCode;

/// What a request leaves for the middleware.
#[derive(Debug, Default, Clone)]
pub struct ContextData {
    /// The error answered with, and its internal cause (never sent).
    pub error: Option<(ErrorCode, Option<String>)>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The authenticated company, for the access log.
    pub company_id: Option<String>,
    /// Extra response headers (rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
}

/// The context of one request.
#[derive(Debug)]
pub struct RequestContext {
    /// The request id (kept from a sane `X-Request-Id`, or new).
    pub request_id: String,
    data: Mutex<ContextData>,
}

impl RequestContext {
    /// A context for a request id.
    pub fn new(request_id: String) -> Arc<Self> {
        Arc::new(Self {
            request_id,
            data: Mutex::new(ContextData::default()),
        })
    }

    /// A copy of what the request recorded.
    pub fn snapshot(&self) -> ContextData {
        self.data.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

tokio::task_local! {
    static CONTEXT: Arc<RequestContext>;
}

/// Runs `fut` with `ctx` as the current request context.
pub async fn scope<F: std::future::Future>(ctx: Arc<RequestContext>, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

fn update(f: impl FnOnce(&mut ContextData)) {
    let _ = CONTEXT.try_with(|ctx| {
        if let Ok(mut data) = ctx.data.lock() {
            f(&mut data);
        }
    });
}

/// The current request id (empty outside a request).
pub fn request_id() -> String {
    CONTEXT
        .try_with(|ctx| ctx.request_id.clone())
        .unwrap_or_default()
}

/// Records the error a request answered with.
pub fn record_error(code: ErrorCode, cause: Option<String>, retry_after: Option<u64>) {
    update(|d| {
        d.error = Some((code, cause));
        if retry_after.is_some() {
            d.retry_after = retry_after;
        }
    });
}

/// Records the authenticated company.
pub fn record_company(company_id: &str) {
    update(|d| d.company_id = Some(company_id.to_owned()));
}

/// Adds a header to the response.
pub fn add_header(name: &'static str, value: String) {
    update(|d| d.headers.push((name, value)));
}
