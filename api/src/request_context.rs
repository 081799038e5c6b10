//! Per-request context in a task-local: the request id, and what the security checks and the
//! rate limiter tell the outermost middleware (the company, rate-limit headers). Errors do not
//! pass through here: they reach the middleware as the request's result.

use std::sync::{Arc, Mutex};

/// What a request leaves for the middleware.
#[derive(Debug, Default, Clone)]
pub struct ContextData {
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

/// Records the authenticated company.
pub fn record_company(company_id: &str) {
    update(|d| d.company_id = Some(company_id.to_owned()));
}

/// Adds a header to the response; a second value of the same header joins the first as a
/// list (`RateLimit-Policy` and `RateLimit` of a request that passed two limits carry both).
pub fn add_header(name: &'static str, value: String) {
    update(|d| match d.headers.iter_mut().find(|(n, _)| *n == name) {
        Some((_, existing)) => {
            existing.push_str(", ");
            existing.push_str(&value);
        }
        None => d.headers.push((name, value)),
    });
}
