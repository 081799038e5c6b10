//! `/console/verifications`: the company's sessions of the session's mode, filtered and a page
//! at a time; a session's page with its timeline and webhook attempts, erase, and in test mode
//! the app's consent screen with the four test outcomes.

use chrono::{NaiveDate, Utc};
use maud::html;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use poem::{
    Request, Response, handler,
    web::{Data, Form, Path, Query},
};
use serde::Deserialize;
use truenumber_core::{
    error_code::ErrorCode,
    verification::{
        self, SessionStatus, VerificationSession,
        listing::{self, SessionFilter},
    },
    webhooks::deliveries::{self, PageAfter},
};

use super::{
    Nav, Notice, Signed, attempt_item, bare_error, masked, not_found, page, signed_in, signed_post,
    when, with_attempts,
};
use crate::{
    cursor::{decode_cursor, encode_cursor},
    error::{ApiError, db_error},
    routes::{test_mode, test_mode::TestOutcome, verification::records},
    state::AppState,
};

/// Rows per page.
const PAGE: u64 = 25;

const STATUSES: [SessionStatus; 5] = [
    SessionStatus::Pending,
    SessionStatus::Verified,
    SessionStatus::Denied,
    SessionStatus::Failed,
    SessionStatus::Expired,
];

/// The filter form, as the query string carries it (empty fields mean "any").
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default, rename = "requestId")]
    request_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    cursor: String,
}

impl ListQuery {
    fn filter(&self) -> Result<(SessionFilter, Option<PageAfter>), ApiError> {
        let status = match self.status.as_str() {
            "" => None,
            s => Some(
                STATUSES
                    .into_iter()
                    .find(|st| st.as_str() == s)
                    .ok_or_else(|| ApiError::invalid_request("status", "is not a status"))?,
            ),
        };
        let day = |field: &str, v: &str| -> Result<Option<NaiveDate>, ApiError> {
            if v.is_empty() {
                return Ok(None);
            }
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| ApiError::invalid_request(field, "must be a date (YYYY-MM-DD)"))
        };
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let from = day("from", &self.from)?.and_then(start);
        // `to` is inclusive: sessions created before the next day.
        let to = day("to", &self.to)?
            .and_then(|d| d.succ_opt())
            .and_then(start);
        if self.request_id.len() > 255 {
            return Err(ApiError::invalid_request("requestId", "is too long"));
        }
        let after = match self.cursor.as_str() {
            "" => None,
            c => Some(decode_cursor(c)?),
        };
        Ok((
            SessionFilter {
                status,
                request_id: (!self.request_id.is_empty()).then(|| self.request_id.clone()),
                created_after: from,
                created_before: to,
            },
            after,
        ))
    }

    fn next_page(&self, cursor: &str) -> String {
        let q = [
            ("status", self.status.as_str()),
            ("requestId", self.request_id.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("cursor", cursor),
        ];
        let encoded: Vec<String> = q
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY_VALUE)))
            .collect();
        format!("/console/verifications?{}", encoded.join("&"))
    }
}

/// RFC 3986's unreserved characters stay; everything else in a query value is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[handler]
pub(crate) async fn list(
    state: Data<&AppState>,
    req: &Request,
    query: poem::Result<Query<ListQuery>>,
) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    let query = query.map(|q| q.0).unwrap_or_default();
    render_list(&state, &signed, &query, Notice::None).await
}

async fn render_list(
    state: &AppState,
    signed: &Signed,
    query: &ListQuery,
    notice: Notice,
) -> Response {
    let (filter, after) = match query.filter() {
        Ok(f) => f,
        Err(e) => return render_rows(signed, query, &[], None, &Notice::Refused(e)),
    };
    let rows = match listing::list_page(
        &state.db,
        &signed.company.company_id,
        signed.session.livemode,
        &filter,
        PAGE + 1,
        after,
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => return bare_error(&db_error(e)),
    };
    let more = rows.len() as u64 > PAGE;
    let rows: Vec<_> = rows.into_iter().take(PAGE as usize).collect();
    let next = more.then(|| rows.last()).flatten().map(|last| {
        query.next_page(&encode_cursor(PageAfter {
            created_at: last.session.created_at,
            id: last.id,
        }))
    });
    let sessions: Vec<VerificationSession> = rows.into_iter().map(|r| r.session).collect();
    render_rows(signed, query, &sessions, next, &notice)
}

fn render_rows(
    signed: &Signed,
    query: &ListQuery,
    rows: &[VerificationSession],
    next: Option<String>,
    notice: &Notice,
) -> Response {
    let now = Utc::now();
    let main = html! {
        form.filters method="get" action="/console/verifications" role="search" aria-label="Filter verifications" {
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" selected[query.status.is_empty()] { "Any" }
                    @for s in STATUSES {
                        option value=(s.as_str()) selected[query.status == s.as_str()] { (s.as_str()) }
                    }
                }
            }
            div.field {
                label for="f-request" { "Request id" }
                input #f-request type="text" name="requestId" value=(query.request_id) maxlength="255";
            }
            div.field {
                label for="f-from" { "Created from" }
                input #f-from type="date" name="from" value=(query.from);
            }
            div.field {
                label for="f-to" { "Created to (inclusive)" }
                input #f-to type="date" name="to" value=(query.to);
            }
            button type="submit" { "Filter" }
            a href="/console/verifications" { "Clear" }
        }
        @if rows.is_empty() {
            p { "No verifications match." }
        } @else {
            div.table-wrap {
                table {
                    caption { "Newest first, " (PAGE) " a page" }
                    thead { tr {
                        th scope="col" { "Verification" }
                        th scope="col" { "Status" }
                        th scope="col" { "Number" }
                        th.hide-narrow scope="col" { "Request id" }
                        th scope="col" { "Created" }
                    } }
                    tbody {
                        @for s in rows {
                            @let status = s.status_at(now);
                            tr {
                                td { a href=(format!("/console/verifications/{}", s.verification_id)) { code { (s.verification_id) } } }
                                td { span.status.(status.as_str()) { (status.as_str()) } }
                                td { (masked(&s.mobile_number)) }
                                td.hide-narrow { code { (s.request_id) } }
                                td { (when(s.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !query.cursor.is_empty() { a href=(query.next_page("")) { "First page" } }
            @if let Some(next) = &next { a href=(next) rel="next" { "Next page" } }
        }
    };
    page(signed, Nav::Verifications, "Verifications", notice, main)
}

#[handler]
pub(crate) async fn detail(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    render_detail(&state, &signed, &id, Notice::None).await
}

fn session_not_found() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "Verification session not found")
}

async fn render_detail(state: &AppState, signed: &Signed, id: &str, notice: Notice) -> Response {
    let company = &signed.company.company_id;
    let live = signed.session.livemode;
    let session = match verification::find_for_company(&state.db, company, live, id).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(signed, Nav::Verifications, session_not_found()),
        Err(e) => return bare_error(&db_error(e)),
    };
    let views = match deliveries::for_verification(&state.db, company, live, id).await {
        Ok(v) => v,
        Err(e) => return bare_error(&db_error(e)),
    };
    let timeline = or_page!(with_attempts(state, views).await);
    let now = Utc::now();
    let status = session.status_at(now);
    let main = html! {
        section.card aria-labelledby="facts" {
            h2 #facts { "Session" }
            dl.facts {
                dt { "Verification id" } dd { code { (session.verification_id) } }
                dt { "Status" } dd { span.status.(status.as_str()) { (status.as_str()) } }
                dt { "Number" } dd { (session.mobile_number) }
                dt { "Request id" } dd { code { (session.request_id) } }
                dt { "Mode" } dd { (if session.livemode { "live" } else { "test" }) }
                dt { "Number binding" } dd { (session.number_binding.map_or("—", |b| b.as_str())) }
                @if let Some(code) = &session.match_code { dt { "Match code" } dd { (code) } }
            }
        }
        section.card aria-labelledby="timeline" {
            h2 #timeline { "Timeline" }
            ol.timeline {
                li { "Created " (when(session.created_at)) }
                @if let Some(t) = session.phone_verified_at {
                    li { "The app's identity provider last proved the number " (when(t)) }
                }
                @if let Some(t) = session.completed_at {
                    li { "Completed as " span.status.(session.stored_status.as_str()) { (session.stored_status.as_str()) } " " (when(t)) }
                } @else if status == SessionStatus::Expired {
                    li { "Expired " (when(session.expires_at)) " (not yet swept)" }
                } @else {
                    li { "Expires " (when(session.expires_at)) " unless the app completes it" }
                }
                @for (view, attempts) in &timeline {
                    li {
                        "Webhook " code { (view.event_type) } " to " code { (view.delivery.url) } ": "
                        span.status.(view.delivery.status.as_str()) { (view.delivery.status.as_str()) }
                        @if attempts.is_empty() { " (no attempt yet)" }
                        ul {
                            @for a in attempts { (attempt_item(a)) }
                        }
                    }
                }
            }
        }
        @if !session.livemode {
            section.card aria-labelledby="consent" {
                h2 #consent { "The app's consent screen (test mode)" }
                div.consent {
                    p.asker { (signed.company.name) }
                    p { "wants to confirm that this is your number: " strong { (session.mobile_number) } }
                    @if let Some(code) = &session.match_code {
                        p { "Pick the code the website shows you: " strong { (code) } }
                    }
                    p.hint { "Expires " (when(session.expires_at)) }
                }
                @if status == SessionStatus::Pending {
                    form.stack method="post" action=(format!("/console/verifications/{}/complete", session.verification_id)) {
                        (signed.csrf_field())
                        p { "Complete it as the app would (the test completion; the webhook goes out as for a live session):" }
                        div.actions {
                            button type="submit" name="outcome" value="verified" { "It's me (verified)" }
                            button.secondary type="submit" name="outcome" value="denied" { "Not me (denied)" }
                            button.secondary type="submit" name="outcome" value="failed" { "Fail" }
                            button.secondary type="submit" name="outcome" value="expired" { "Expire" }
                        }
                    }
                } @else {
                    p { "This session is " (status.as_str()) "; only pending sessions can be completed." }
                }
            }
        }
        section.card aria-labelledby="erase" {
            h2 #erase { "Erase" }
            form.stack method="post" action=(format!("/console/verifications/{}/erase", session.verification_id)) {
                (signed.csrf_field())
                label.check {
                    input type="checkbox" name="confirm" value="yes" required;
                    "I understand: the session, its events and webhook deliveries are deleted now, for good."
                }
                div { button.danger type="submit" { "Erase this verification" } }
            }
        }
        p { a href="/console/verifications" { "All verifications" } }
    };
    page(
        signed,
        Nav::Verifications,
        &format!("Verification {id}"),
        &notice,
        main,
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

#[handler]
pub(crate) async fn erase(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
    form: poem::Result<Form<EraseForm>>,
) -> Response {
    let form = form.map(|f| f.0).unwrap_or(EraseForm {
        csrf: String::new(),
        confirm: String::new(),
    });
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    if form.confirm != "yes" {
        let refused = ApiError::invalid_request("confirm", "must be ticked to erase");
        return render_detail(&state, &signed, &id, refused.into()).await;
    }
    match records::erase(&state, &signed.identity(), &id).await {
        Ok(()) => {
            let done = Notice::Done(format!("Verification {id} was erased."));
            render_list(&state, &signed, &ListQuery::default(), done).await
        }
        Err(e) if e.code == ErrorCode::SessionNotFound => not_found(&signed, Nav::Verifications, e),
        Err(e) => render_detail(&state, &signed, &id, e.into()).await,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompleteForm {
    #[serde(default)]
    csrf: String,
    outcome: TestOutcome,
}

#[handler]
pub(crate) async fn complete(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
    form: poem::Result<Form<CompleteForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request(
            "outcome",
            "must be verified, failed, denied or expired",
        ));
    };
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    let outcome = SessionStatus::from(form.outcome);
    let notice = match test_mode::complete(&state, &signed.identity(), &id, outcome).await {
        Ok(_) => Notice::Done(format!(
            "Completed as {}; the webhook is on its way.",
            outcome.as_str()
        )),
        Err(e) if e.code == ErrorCode::SessionNotFound => {
            return not_found(&signed, Nav::Verifications, e);
        }
        Err(e) => e.into(),
    };
    render_detail(&state, &signed, &id, notice).await
}
