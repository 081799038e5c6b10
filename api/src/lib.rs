//! The TrueNumber HTTP API: routes, authentication, the error shape, operator commands.

pub mod cli;
pub mod console;
pub mod cursor;
pub mod error;
pub mod json_body;
pub mod middleware;
pub mod rate_limit;
pub mod request_context;
pub mod responses;
pub mod routes;
pub mod security;
pub mod server;
pub mod standalone;
pub mod state;
pub mod timestamp;

use std::net::SocketAddr;

use poem::{
    Endpoint, EndpointExt, Response, Route, get,
    listener::{Acceptor, AcceptorExt, Listener, RustlsCertificate, RustlsConfig, TcpListener},
    middleware::CatchPanic,
};
use poem_openapi::OpenApiService;
use truenumber_core::config::Config;

use crate::{
    middleware::{HttpsPolicy, RequestMiddleware, RouteTable},
    routes::{
        app::{AppApi, blocked_companies::BlockedCompaniesApi},
        company::{
            api_keys::ApiKeysApi, deliveries::DeliveriesApi, profile::ProfileApi,
            webhook::WebhookApi,
        },
        health,
        test_mode::TestModeApi,
        verification::{flow::VerificationApi, records::VerificationsApi},
    },
    state::AppState,
};

/// Where the versioned API lives.
pub const API_PREFIX: &str = "/api/v1";

/// Every operation of the versioned API, one OpenAPI type per resource.
pub type Api = (
    VerificationApi,
    VerificationsApi,
    AppApi,
    BlockedCompaniesApi,
    TestModeApi,
    ProfileApi,
    WebhookApi,
    ApiKeysApi,
    DeliveriesApi,
);

/// The OpenAPI service for a state (its `servers` entry comes from `API_BASE_URL`).
pub fn openapi_service(state: AppState) -> OpenApiService<Api, ()> {
    let server = format!("{}{API_PREFIX}", state.config.api_base_url);
    OpenApiService::new(
        (
            VerificationApi {
                state: state.clone(),
            },
            VerificationsApi {
                state: state.clone(),
            },
            AppApi {
                state: state.clone(),
            },
            BlockedCompaniesApi {
                state: state.clone(),
            },
            TestModeApi {
                state: state.clone(),
            },
            ProfileApi {
                state: state.clone(),
            },
            WebhookApi {
                state: state.clone(),
            },
            ApiKeysApi {
                state: state.clone(),
            },
            DeliveriesApi { state },
        ),
        "TrueNumber API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Mobile-number verification. A company's backend initiates a verification with its API \
         key and receives a deep link; the TrueNumber app submits the user's confirmation with \
         its app token; the company reads the status or receives a signed webhook. Every error \
         is JSON: `{status, message, code, timestamp, requestId}`.",
    )
    .server(server)
}

/// The OpenAPI document as pretty JSON (what `openapi.json` at the repository root holds):
/// poem-openapi's document plus what it cannot express, the `links` from initiate's 200 to
/// status and submit (so generators and stateful fuzzers can follow a session).
pub fn openapi_json(state: AppState) -> String {
    with_links(&openapi_service(state).spec())
}

fn with_links(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    let id = "$response.body#/verificationId";
    let links = serde_json::json!({
        "GetVerificationStatus": {
            "operationId": "getVerificationStatus",
            "parameters": {"verificationId": id},
            "description": "Read the status of the session just initiated.",
        },
        "SubmitVerification": {
            "operationId": "submitVerification",
            "requestBody": {"verificationId": id},
            "description": "What the TrueNumber app submits for this session (with an app token).",
        },
        "DenyVerification": {
            "operationId": "denyVerification",
            "requestBody": {"verificationId": id},
            "description": "What the TrueNumber app sends when the user says \"not me\".",
        },
        "GetAppVerification": {
            "operationId": "getAppVerification",
            "parameters": {"verificationId": id},
            "description": "What the TrueNumber app shows for this session (with an app token).",
        },
        "CompleteTestVerification": {
            "operationId": "completeTestVerification",
            "parameters": {"verificationId": id},
            "description": "Test mode: complete this test session without the app.",
        },
    });
    if let Some(ok) = doc
        .pointer_mut("/paths/~1verification~1initiate/post/responses/200")
        .and_then(serde_json::Value::as_object_mut)
    {
        ok.insert("links".to_owned(), links);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// What the start-up line says of webhooks to private networks (loopback, RFC 1918, …).
pub fn private_webhooks_line(config: &Config) -> &'static str {
    if config.webhook_allow_private_networks {
        "webhooks to private and loopback addresses are ALLOWED \
         (WEBHOOK_ALLOW_PRIVATE_NETWORKS=true: development only)"
    } else {
        "webhooks to private and loopback addresses are refused \
         (WEBHOOK_ALLOW_PRIVATE_NETWORKS=false)"
    }
}

/// The whole HTTP application.
pub fn build_app(state: AppState) -> impl Endpoint<Output = poem::Response> {
    let api = openapi_service(state.clone());
    let raw_spec = api.spec();
    let spec = with_links(&raw_spec);
    let routes = RouteTable::from_spec(&spec, API_PREFIX);
    // Swagger UI embeds the document; give it the one with links.
    let ui_html = api.swagger_ui_html().replacen(&raw_spec, &spec, 1);
    let spec_endpoint = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(spec.clone())
    });
    let ui = Route::new().at(
        "/",
        poem::endpoint::make_sync(move |_| poem::web::Html(ui_html.clone())),
    );
    Route::new()
        .at(format!("{API_PREFIX}/openapi.json"), spec_endpoint)
        .nest(API_PREFIX, api)
        .nest("/docs", ui)
        .nest("/console", console::routes())
        // A newcomer's first URL: the API's own document and console of calls; the body links
        // the company console too.
        .at("/", get(poem::endpoint::make_sync(|_| root_redirect())))
        .at("/health", get(health::health))
        .at("/health/live", get(health::live))
        .at("/health/ready", get(health::ready))
        .at("/metrics", get(health::metrics))
        .data(state.clone())
        .with(CatchPanic::new())
        .with(RequestMiddleware::new(
            state.config.max_body_bytes,
            routes,
            state.metrics.clone(),
            HttpsPolicy {
                require: state.config.require_https,
                trusted_proxies: state.config.trusted_proxies.clone(),
            },
            state.config.max_concurrent_requests,
            state.config.http_body_timeout,
            state.config.auth_failure_delay,
        ))
}

/// `/`: a 303 to `/docs`, whose body links both the API document and the console.
fn root_redirect() -> Response {
    Response::builder()
        .status(poem::http::StatusCode::SEE_OTHER)
        .header(poem::http::header::LOCATION, "/docs")
        .content_type("text/html; charset=utf-8")
        .body(
            "<!DOCTYPE html><html lang=\"en\"><title>TrueNumber</title><p>The API: \
             <a href=\"/docs\">/docs</a>. The company console: \
             <a href=\"/console\">/console</a>.</p></html>",
        )
}

/// A bound listener, so callers (tests) learn the port before serving.
pub struct BoundServer {
    acceptor: poem::listener::BoxAcceptor,
    /// The address it listens on.
    pub local_addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free one); with `TLS_CERT_FILE` and `TLS_KEY_FILE` the listener
/// terminates TLS itself (rustls).
pub async fn bind(addr: SocketAddr, config: &Config) -> std::io::Result<BoundServer> {
    let acceptor = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))
                })
            };
            let certificate = RustlsCertificate::new().cert(read(cert)?).key(read(key)?);
            TcpListener::bind(addr)
                .rustls(RustlsConfig::new().fallback(certificate))
                .into_acceptor()
                .await?
                .boxed()
        }
        _ => TcpListener::bind(addr).into_acceptor().await?.boxed(),
    };
    let local_addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or_else(|| std::io::Error::other("listener has no socket address"))?;
    Ok(BoundServer {
        acceptor,
        local_addr,
    })
}

impl BoundServer {
    /// Serves until `shutdown` resolves, then lets in-flight requests finish (up to 30 s), with
    /// the connection time limits of [`server`].
    pub async fn serve(
        self,
        state: AppState,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let limits = server::ConnectionLimits {
            header_timeout: state.config.http_header_timeout,
            idle_timeout: state.config.http_idle_timeout,
        };
        server::serve(
            self.acceptor,
            build_app(state),
            limits,
            shutdown,
            std::time::Duration::from_secs(30),
        )
        .await
    }
}
