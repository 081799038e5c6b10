//! HTTPS policy: `REQUIRE_HTTPS` (refuse plain HTTP, except the probes and metrics), which
//! proxies' `X-Forwarded-Proto` is believed (`TRUSTED_PROXIES`), and HSTS on answers that went
//! over TLS.

use poem::{Request, http::header};
use truenumber_core::config::IpNet;

/// `Strict-Transport-Security` on every response that went over HTTPS.
pub(super) const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Whether plain HTTP is refused, and whose `X-Forwarded-Proto` is believed.
#[derive(Debug, Clone, Default)]
pub struct HttpsPolicy {
    /// `REQUIRE_HTTPS`.
    pub require: bool,
    /// `TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpNet>,
}

impl HttpsPolicy {
    /// Whether the request arrived over TLS, here or at a trusted proxy.
    pub(super) fn is_secure(&self, req: &Request) -> bool {
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

    /// Whether this request must be refused: HTTPS is required, it came over plain HTTP, and
    /// it is not a probe or a metrics scrape (load balancers and Prometheus talk to nodes
    /// directly inside the deployment).
    pub(super) fn refuses(&self, secure: bool, path: &str) -> bool {
        self.require && !secure && !exempt(path)
    }
}

fn exempt(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/") || path == "/metrics"
}

/// Whether a request announces a body (a length above zero, or chunked): an early answer then
/// leaves it unread, so the connection cannot carry another request.
pub(super) fn has_body(req: &Request) -> bool {
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING)
}
