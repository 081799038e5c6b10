//! The company console (PRODUCT.md, "Company console"): server-rendered HTML at `/console`,
//! in both modes, from this binary alone (maud templates; one embedded stylesheet; no script).
//!
//! - **Sign-in** by a single-use link (`POST /company/console-links`, `company console-link`),
//!   which sets the session cookie `tn_console` (`HttpOnly`, `SameSite=Strict`, `Path=/console`,
//!   `Secure` when `API_BASE_URL` is https). The session lives in the database
//!   ([`truenumber_core::companies::console`]), so any node serves any browser and sign-out
//!   ends it everywhere.
//! - **Every action calls the function the API's operation calls** (the `pub(crate)` functions
//!   of `routes::…`), with the session's company as the identity: the same rules, the same
//!   error codes and messages. Company-wide settings act as the company's live identity (the
//!   link was issued by a live key); data (verifications, deliveries, test completion) acts in
//!   the session's mode, the switch in the header.
//! - **Safety**: every `POST` carries the session's CSRF token (compared in constant time);
//!   every response carries a strict `Content-Security-Policy` (no script at all),
//!   `frame-ancestors 'none'`, `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.
//!   Another company's or mode's id is a 404 page, as in the API.

/// The value of a `Result<T, Response>`, or return its response (every page's first step:
/// the session, or the redirect or refusal to give instead).
macro_rules! or_page {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

mod keys;
mod overview;
mod settings;
mod verifications;
mod webhooks;

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use poem::{
    EndpointExt, IntoEndpoint, Request, Response, Route, get, handler,
    http::{HeaderValue, StatusCode, header},
    middleware::SetHeader,
    post,
    web::{Data, Form, Query},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use truenumber_core::{
    companies::{
        self,
        api_keys::{AuthenticatedCompany, Scopes},
        console::{self, ConsoleError, ConsoleSession},
        policy::Overrides,
    },
    error_code::ErrorCode,
    webhooks::deliveries::{self, Attempt, DeliveryView},
};
use truenumber_entities::{api_key::KeyMode, company};

use crate::{
    error::{ApiError, db_error},
    state::AppState,
};

/// The cookie that carries a console session.
const COOKIE: &str = "tn_console";

/// The console's one stylesheet, embedded in the binary.
const STYLESHEET: &str = include_str!("console.css");

/// What every console response carries: no script may run, nothing may frame it, no URL leaks
/// to another site, nothing is cached.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The sign-in URL of a link token under the node's public base URL.
pub fn sign_in_url(api_base_url: &str, token: &str) -> String {
    format!(
        "{}/console/sign-in?token={token}",
        api_base_url.trim_end_matches('/')
    )
}

/// The API error of a console credential failure.
pub(crate) fn console_error(e: ConsoleError) -> ApiError {
    match e {
        ConsoleError::Db(db) => db_error(db),
        ConsoleError::Random(r) => ApiError::internal(r),
    }
}

/// Every console route, with its headers.
pub fn routes() -> impl poem::Endpoint<Output = Response> {
    Route::new()
        .at("/", get(overview::show))
        .at("/sign-in", get(sign_in))
        .at("/signed-out", get(signed_out))
        .at("/sign-out", post(sign_out))
        .at("/mode", post(switch_mode))
        .at("/console.css", get(stylesheet))
        .at("/verifications", get(verifications::list))
        .at("/verifications/:id", get(verifications::detail))
        .at("/verifications/:id/erase", post(verifications::erase))
        .at("/verifications/:id/complete", post(verifications::complete))
        .at("/webhooks", get(webhooks::show))
        .at("/webhooks/url", post(webhooks::set_url))
        .at("/webhooks/test", post(webhooks::send_test))
        .at("/webhooks/secret", post(webhooks::rotate_secret))
        .at("/webhooks/recover", post(webhooks::recover))
        .at(
            "/webhooks/deliveries/:id/redeliver",
            post(webhooks::redeliver),
        )
        .at("/api-keys", get(keys::show).post(keys::create))
        .at("/api-keys/:id/roll", post(keys::roll))
        .at("/api-keys/:id/revoke", post(keys::revoke))
        .at("/settings", get(settings::show))
        .at("/settings/countries", post(settings::set_countries))
        .with(
            SetHeader::new()
                .overriding(header::CONTENT_SECURITY_POLICY, CSP)
                .overriding(header::REFERRER_POLICY, "no-referrer")
                .overriding(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                .overriding(header::X_FRAME_OPTIONS, "DENY")
                .overriding(header::CACHE_CONTROL, "no-store"),
        )
        .into_endpoint()
        .map_to_response()
}

#[handler]
fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}

/// A signed-in browser: its cookie, session and company.
pub(crate) struct Signed {
    cookie: String,
    pub session: ConsoleSession,
    pub company: company::Model,
}

impl Signed {
    /// The identity data actions run as: the company in the session's mode, every scope.
    pub fn identity(&self) -> AuthenticatedCompany {
        self.identity_in(if self.session.livemode {
            KeyMode::Live
        } else {
            KeyMode::Test
        })
    }

    /// The identity company-wide settings change as: the company's live identity (the
    /// session was opened by a live key's link).
    pub fn live_identity(&self) -> AuthenticatedCompany {
        self.identity_in(KeyMode::Live)
    }

    fn identity_in(&self, mode: KeyMode) -> AuthenticatedCompany {
        AuthenticatedCompany {
            company_id: self.company.company_id.clone(),
            key_id: "console".to_owned(),
            mode,
            scopes: Scopes::ALL,
            expires_at: None,
            is_active: self.company.is_active,
            overrides: Overrides::from_row(&self.company),
        }
    }

    /// Whether `token` is this session's CSRF token (constant time).
    fn csrf_ok(&self, token: &str) -> bool {
        bool::from(token.as_bytes().ct_eq(self.session.csrf_token.as_bytes()))
    }

    /// The CSRF token's hidden field, for every state-changing form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.session.csrf_token); }
    }
}

fn cookie_value(req: &Request) -> Option<String> {
    // `Cookie: a=1; tn_console=…`: the pairs are split by `;`, names are exact.
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The browser's session, or the response to give instead: a redirect to the signed-out page,
/// a 403 page for a deactivated company, an error page when the database fails.
pub(crate) async fn signed_in(state: &AppState, req: &Request) -> Result<Signed, Response> {
    let redirect = || see_other("/console/signed-out");
    let Some(cookie) = cookie_value(req) else {
        return Err(redirect());
    };
    let session = console::session(&state.db, &cookie)
        .await
        .map_err(|e| bare_error(&console_error(e)))?
        .ok_or_else(redirect)?;
    let company = companies::find_company(&state.db, &session.company_id)
        .await
        .map_err(|e| bare_error(&db_error(e)))?
        .ok_or_else(redirect)?;
    if !company.is_active {
        return Err(bare_error(&ApiError::new(
            ErrorCode::CompanyInactive,
            "This company is deactivated; ask your TrueNumber operator",
        )));
    }
    crate::request_context::record_company(&company.company_id);
    Ok(Signed {
        cookie,
        session,
        company,
    })
}

/// The signed-in browser of a form post whose CSRF token matches, or the response to give.
pub(crate) async fn signed_post(
    state: &AppState,
    req: &Request,
    csrf: &str,
) -> Result<Signed, Response> {
    let signed = signed_in(state, req).await?;
    if !signed.csrf_ok(csrf) {
        return Err(bare_error(&ApiError::new(
            ErrorCode::Forbidden,
            "This form is out of date or did not come from the console (CSRF check); reload \
             the page and try again",
        )));
    }
    Ok(signed)
}

/// A `303 See Other` to `to`.
pub(crate) fn see_other(to: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, to)
        .finish()
}

/// The outcome of a form, shown above the page it returns to.
#[derive(Debug, Default)]
pub(crate) enum Notice {
    /// Nothing happened.
    #[default]
    None,
    /// It worked.
    Done(String),
    /// It worked, and this secret is shown once.
    Secret {
        /// What it is.
        what: String,
        /// The value.
        value: String,
        /// What else to know (an expiry).
        note: Option<String>,
    },
    /// The API's refusal, with its code and message.
    Refused(ApiError),
}

impl Notice {
    /// The HTTP status of the page that shows it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused(e) => e.status(),
            _ => StatusCode::OK,
        }
    }

    fn render(&self) -> Markup {
        match self {
            Self::None => html! {},
            Self::Done(msg) => html! {
                div.notice.ok role="status" { p { (msg) } }
            },
            Self::Secret { what, value, note } => html! {
                div.notice.secret role="status" {
                    p { strong { (what) } " — shown once; copy it now:" }
                    p { code.secret-value { (value) } }
                    @if let Some(note) = note { p { (note) } }
                }
            },
            Self::Refused(e) => html! {
                div.notice.error role="alert" {
                    p { strong { (e.code.as_str()) } ": " (e.message) }
                }
            },
        }
    }
}

impl From<ApiError> for Notice {
    fn from(e: ApiError) -> Self {
        Self::Refused(e)
    }
}

/// The pages of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Verifications,
    Webhooks,
    ApiKeys,
    Settings,
}

impl Nav {
    const ALL: [Self; 5] = [
        Self::Overview,
        Self::Verifications,
        Self::Webhooks,
        Self::ApiKeys,
        Self::Settings,
    ];

    const fn path(self) -> &'static str {
        match self {
            Self::Overview => "/console",
            Self::Verifications => "/console/verifications",
            Self::Webhooks => "/console/webhooks",
            Self::ApiKeys => "/console/api-keys",
            Self::Settings => "/console/settings",
        }
    }

    const fn label(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Verifications => "Verifications",
            Self::Webhooks => "Webhooks",
            Self::ApiKeys => "API keys",
            Self::Settings => "Settings",
        }
    }
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · TrueNumber console" }
                link rel="stylesheet" href="/console/console.css";
            }
            body { (body) }
        }
    }
}

/// A whole console page: header (company, mode switch, sign-out), navigation, the notice,
/// then `main`.
pub(crate) fn page(
    signed: &Signed,
    current: Nav,
    title: &str,
    notice: &Notice,
    main: Markup,
) -> Response {
    let live = signed.session.livemode;
    let body = html! {
        a.skip href="#main" { "Skip to content" }
        header.top {
            div.brand {
                span.logo { "TrueNumber" }
                span.company { (signed.company.name) " (" (signed.company.company_id) ")" }
            }
            form.mode method="post" action="/console/mode" {
                (signed.csrf_field())
                input type="hidden" name="live" value=(if live { "false" } else { "true" });
                span.badge.(if live { "live" } else { "test" }) {
                    (if live { "Live mode" } else { "Test mode" })
                }
                button type="submit" {
                    (if live { "Switch to test mode" } else { "Switch to live mode" })
                }
            }
            form.signout method="post" action="/console/sign-out" {
                (signed.csrf_field())
                button type="submit" { "Sign out" }
            }
        }
        nav aria-label="Console" {
            ul {
                @for item in Nav::ALL {
                    li {
                        @if item == current {
                            a href=(item.path()) aria-current="page" { (item.label()) }
                        } @else {
                            a href=(item.path()) { (item.label()) }
                        }
                    }
                }
            }
        }
        main #main tabindex="-1" {
            @if !live {
                p.testbanner { "Test mode: you are looking at test data (sessions made with tn_test_ keys)." }
            }
            h1 { (title) }
            (notice.render())
            (main)
        }
    };
    html_response(notice.status(), document(title, body))
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// A page outside a session (the error of a refused request, the signed-out page).
fn bare_page(status: StatusCode, title: &str, main: Markup) -> Response {
    let body = html! {
        header.top { div.brand { span.logo { "TrueNumber" } } }
        main #main {
            h1 { (title) }
            (main)
        }
    };
    html_response(status, document(title, body))
}

/// An error page for a request the console refused before any page (CSRF, database down).
pub(crate) fn bare_error(e: &ApiError) -> Response {
    if e.status().is_server_error() {
        tracing::error!(
            code = e.code.as_str(),
            cause = e.cause.as_deref(),
            "console request failed"
        );
    }
    bare_page(
        e.status(),
        "Something went wrong",
        html! {
            div.notice.error role="alert" {
                p { strong { (e.code.as_str()) } ": " (e.message) }
            }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// The 404 of an id this session cannot see (unknown, another company's or mode's).
pub(crate) fn not_found(signed: &Signed, nav: Nav, e: ApiError) -> Response {
    page(
        signed,
        nav,
        "Not found",
        &Notice::Refused(e),
        html! {
            p { a href=(nav.path()) { "Back to " (nav.label()) } }
        },
    )
}

#[derive(Debug, Deserialize)]
struct SignInQuery {
    #[serde(default)]
    token: String,
}

#[handler]
async fn sign_in(state: Data<&AppState>, query: poem::Result<Query<SignInQuery>>) -> Response {
    let token = query.map(|q| q.0.token).unwrap_or_default();
    if token.is_empty() || token.len() > 128 {
        return link_refused();
    }
    match console::sign_in(&state.db, &token).await {
        Ok(Some(opened)) => {
            crate::request_context::record_company(&opened.session.company_id);
            tracing::info!("console sign-in");
            let secure = state.config.api_base_url.starts_with("https://");
            let max_age = console::SESSION_MAX_AGE.as_secs();
            let cookie = format!(
                "{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
                opened.cookie,
                if secure { "; Secure" } else { "" }
            );
            let mut resp = see_other("/console");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(None) => link_refused(),
        Err(e) => bare_error(&console_error(e)),
    }
}

fn link_refused() -> Response {
    bare_page(
        StatusCode::UNAUTHORIZED,
        "This sign-in link does not work",
        html! {
            div.notice.error role="alert" {
                p { "The link is unknown, was used already, or has expired (links work once, for 10 minutes)." }
            }
            (how_to_sign_in())
        },
    )
}

fn how_to_sign_in() -> Markup {
    html! {
        h2 { "How to sign in" }
        p { "The console opens with a single-use link. Get one with a live API key that has the "
            code { "management" } " scope:" }
        pre { code { "curl -X POST -H \"Authorization: Bearer $TN_API_KEY\" \\\n  http://HOST/api/v1/company/console-links" } }
        p { "or, as the operator, on the server:" }
        pre { code { "truenumber-api company console-link --company-id YOUR_COMPANY" } }
        p { "Open the " code { "url" } " it returns within 10 minutes." }
    }
}

#[handler]
fn signed_out() -> Response {
    bare_page(
        StatusCode::OK,
        "Sign in to the TrueNumber console",
        html! {
            p { "You are not signed in (or your session ended: sessions last 12 hours, and end after an hour without use)." }
            (how_to_sign_in())
            p { "The API itself is documented at " a href="/docs" { "/docs" } "." }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

impl CsrfForm {
    /// The token a bodiless form carried (empty when the body did not parse: refused then).
    pub fn token(form: poem::Result<Form<Self>>) -> String {
        form.map(|f| f.0.csrf).unwrap_or_default()
    }
}

#[handler]
async fn sign_out(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<CsrfForm>>,
) -> Response {
    let csrf = CsrfForm::token(form);
    let signed = or_page!(signed_post(&state, req, &csrf).await);
    if let Err(e) = console::end(&state.db, &signed.cookie).await {
        return bare_error(&console_error(e));
    }
    tracing::info!("console sign-out");
    let mut resp = see_other("/console/signed-out");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "tn_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct ModeForm {
    #[serde(default)]
    csrf: String,
    live: bool,
}

#[handler]
async fn switch_mode(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<ModeForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request("live", "must be true or false"));
    };
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    if let Err(e) = console::set_mode(&state.db, &signed.cookie, form.live).await {
        return bare_error(&console_error(e));
    }
    see_other("/console")
}

/// An instant as the console shows it (UTC, to the second).
pub(crate) fn when(t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S UTC")) }
    }
}

/// A number with all but its country code and last three digits hidden (for listings).
pub(crate) fn masked(number: &str) -> String {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits <= 5 {
        return "•••".to_owned();
    }
    let keep_tail = 3;
    let head: String = number.chars().take(3).collect();
    let tail: String = number
        .chars()
        .rev()
        .take(keep_tail)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}••••{tail}")
}

/// Each delivery with its attempts, read in one query (a session's timeline, the deliveries
/// page).
pub(crate) async fn with_attempts(
    state: &AppState,
    views: Vec<DeliveryView>,
) -> Result<Vec<(DeliveryView, Vec<Attempt>)>, Response> {
    let ids: Vec<uuid::Uuid> = views.iter().map(|v| v.delivery.id).collect();
    let mut attempts = deliveries::attempts_of(&state.db, &ids)
        .await
        .map_err(|e| bare_error(&db_error(e)))?;
    Ok(views
        .into_iter()
        .map(|v| {
            let list = attempts.remove(&v.delivery.id).unwrap_or_default();
            (v, list)
        })
        .collect())
}

/// One webhook attempt as a list item: when, the HTTP status or none, latency, error.
pub(crate) fn attempt_item(a: &Attempt) -> Markup {
    html! {
        li {
            "Attempt " (a.attempt) " " (when(a.attempted_at)) ": "
            (a.status_code.map_or_else(|| "no response".to_owned(), |c| format!("HTTP {c}")))
            ", " (a.latency_ms) " ms"
            @if let Some(err) = &a.error { " — " (err) }
        }
    }
}

/// Text that is known to be safe HTML (the server-built SVG chart).
pub(crate) fn trusted(svg: String) -> PreEscaped<String> {
    PreEscaped(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_in_listings() {
        assert_eq!(masked("+447700900123"), "+44••••123");
        assert_eq!(masked("+1234"), "•••");
    }

    #[test]
    fn sign_in_urls_join_the_base() {
        assert_eq!(
            sign_in_url("http://localhost:3000/", "abc"),
            "http://localhost:3000/console/sign-in?token=abc"
        );
    }
}
