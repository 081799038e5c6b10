//! `/console/webhooks`: the URL (set, clear; a refusal shows the API's reason), a test event,
//! the secret's rotation (shown once), deliveries with their attempts, redeliver, recover.

use chrono::{NaiveDateTime, Utc};
use maud::html;
use poem::{
    Request, Response, handler,
    web::{Data, Form, Path, Query},
};
use serde::Deserialize;
use truenumber_core::webhooks::deliveries::{self, DeliveryStatus, PageAfter};

use super::{
    CsrfForm, Nav, Notice, Signed, attempt_item, bare_error, page, signed_in, signed_post, when,
    with_attempts,
};
use crate::{
    cursor::{decode_cursor, encode_cursor},
    error::{ApiError, db_error},
    routes::company::{deliveries as delivery_ops, webhook},
    state::AppState,
};

/// Deliveries a page.
const PAGE: u64 = 20;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    cursor: String,
}

#[handler]
pub(crate) async fn show(
    state: Data<&AppState>,
    req: &Request,
    query: poem::Result<Query<PageQuery>>,
) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    let cursor = query.map(|q| q.0.cursor).unwrap_or_default();
    render(&state, &signed, &cursor, Notice::None).await
}

async fn render(state: &AppState, signed: &Signed, cursor: &str, notice: Notice) -> Response {
    let after = match cursor {
        "" => None,
        c => match decode_cursor(c) {
            Ok(a) => Some(a),
            Err(e) => return Box::pin(render(state, signed, "", e.into())).await,
        },
    };
    let company = &signed.company.company_id;
    let live = signed.session.livemode;
    let rows = match deliveries::list_page(&state.db, company, live, None, PAGE + 1, after).await {
        Ok(rows) => rows,
        Err(e) => return bare_error(&db_error(e)),
    };
    let more = rows.len() as u64 > PAGE;
    let rows: Vec<_> = rows.into_iter().take(PAGE as usize).collect();
    let next = more.then(|| rows.last()).flatten().map(|last| {
        encode_cursor(PageAfter {
            created_at: last.delivery.created_at,
            id: last.delivery.id,
        })
    });
    let with_attempts = or_page!(with_attempts(state, rows).await);
    let url = signed.company.webhook_url.as_deref();
    let main = html! {
        section.card aria-labelledby="endpoint" {
            h2 #endpoint { "Endpoint" }
            p {
                "Completed verifications (and test events) are POSTed here, signed per Standard Webhooks. "
                @if url.is_none() { strong { "No URL is set: nothing is delivered." } }
            }
            form.stack method="post" action="/console/webhooks/url" {
                (signed.csrf_field())
                div.field {
                    label for="w-url" { "Webhook URL" span.hint { " (https://…; private and loopback addresses are refused unless the operator allows them)" } }
                    input #w-url type="url" name="url" value=(url.unwrap_or("")) maxlength="2048" placeholder="https://example.com/webhooks/truenumber";
                }
                div.actions {
                    button type="submit" name="action" value="set" { "Save URL" }
                    @if url.is_some() {
                        button.secondary type="submit" name="action" value="clear" { "Remove URL" }
                    }
                }
            }
        }
        section.card aria-labelledby="tools" {
            h2 #tools { "Test and secret" }
            div.actions {
                form.inline method="post" action="/console/webhooks/test" {
                    (signed.csrf_field())
                    button type="submit" { "Send a test event" }
                }
                form.inline method="post" action="/console/webhooks/secret" {
                    (signed.csrf_field())
                    button.secondary type="submit" { "Rotate the signing secret" }
                }
            }
            p.hint { "After a rotation the previous secret keeps signing beside the new one for the overlap, so your receiver can switch without losing an event." }
        }
        section.card aria-labelledby="recover" {
            h2 #recover { "Recover failed deliveries" }
            form.filters method="post" action="/console/webhooks/recover" {
                (signed.csrf_field())
                div.field {
                    label for="r-since" { "Failed deliveries created since (UTC)" }
                    input #r-since type="datetime-local" name="since" required;
                }
                button type="submit" { "Send them again" }
            }
        }
        h2 { "Deliveries" }
        @if with_attempts.is_empty() {
            p { "No deliveries yet." }
        } @else {
            div.table-wrap {
                table {
                    caption { "Newest first, " (PAGE) " a page" }
                    thead { tr {
                        th scope="col" { "Created" }
                        th scope="col" { "Event" }
                        th scope="col" { "Status" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "Action" }
                    } }
                    tbody {
                        @for (view, attempts) in &with_attempts {
                            @let d = &view.delivery;
                            tr {
                                td { (when(d.created_at)) }
                                td {
                                    code { (view.event_type) }
                                    @if let Some(v) = &view.verification_id {
                                        br; a href=(format!("/console/verifications/{v}")) { code { (v) } }
                                    }
                                }
                                td {
                                    span.status.(d.status.as_str()) { (d.status.as_str()) }
                                    @if let Some(code) = d.last_status_code { br; "HTTP " (code) }
                                }
                                td {
                                    details {
                                        summary { (attempts.len()) " attempt" (if attempts.len() == 1 { "" } else { "s" }) }
                                        ul {
                                            @for a in attempts { (attempt_item(a)) }
                                        }
                                        p.hint { "To " code { (d.url) } }
                                    }
                                }
                                td {
                                    @if d.status == DeliveryStatus::Pending {
                                        span.hint { "retrying" }
                                    } @else {
                                        form.inline method="post" action=(format!("/console/webhooks/deliveries/{}/redeliver", d.id)) {
                                            (signed.csrf_field())
                                            button.secondary type="submit" aria-label=(format!("Redeliver {}", d.id)) { "Redeliver" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !cursor.is_empty() { a href="/console/webhooks" { "First page" } }
            @if let Some(next) = &next { a href=(format!("/console/webhooks?cursor={next}")) rel="next" { "Next page" } }
        }
    };
    page(signed, Nav::Webhooks, "Webhooks", &notice, main)
}

#[derive(Debug, Deserialize)]
pub(crate) struct UrlForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    action: String,
}

#[handler]
pub(crate) async fn set_url(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<UrlForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request("url", "is missing"));
    };
    let mut signed = or_page!(signed_post(&state, req, &form.csrf).await);
    let identity = signed.live_identity();
    let notice = if form.action == "clear" {
        match webhook::clear_url(&state, &identity).await {
            Ok(()) => {
                signed.company.webhook_url = None;
                Notice::Done(
                    "The webhook URL was removed; nothing is delivered until you set one."
                        .to_owned(),
                )
            }
            Err(e) => e.into(),
        }
    } else {
        match webhook::set_url(&state, &identity, form.url.trim()).await {
            Ok(url) => {
                let done = format!("Webhook URL saved: {url}");
                signed.company.webhook_url = Some(url);
                Notice::Done(done)
            }
            Err(e) => e.into(),
        }
    };
    render(&state, &signed, "", notice).await
}

#[handler]
pub(crate) async fn send_test(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<CsrfForm>>,
) -> Response {
    let csrf = CsrfForm::token(form);
    let signed = or_page!(signed_post(&state, req, &csrf).await);
    let notice = match webhook::send_test(&state, &signed.identity()).await {
        Ok(sent) => Notice::Done(format!(
            "Test event {} queued (delivery {}); it appears below with its attempts.",
            sent.event_id, sent.delivery_id
        )),
        Err(e) => e.into(),
    };
    render(&state, &signed, "", notice).await
}

#[handler]
pub(crate) async fn rotate_secret(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<CsrfForm>>,
) -> Response {
    let csrf = CsrfForm::token(form);
    let signed = or_page!(signed_post(&state, req, &csrf).await);
    let notice = match webhook::rotate_secret(&state, &signed.live_identity()).await {
        Ok(r) => Notice::Secret {
            what: "New webhook signing secret".to_owned(),
            value: r.webhook_secret,
            note: Some(format!(
                "The previous secret keeps signing too until {}.",
                r.previous_secret_expires_at
                    .0
                    .format("%Y-%m-%d %H:%M:%S UTC")
            )),
        },
        Err(e) => e.into(),
    };
    render(&state, &signed, "", notice).await
}

#[handler]
pub(crate) async fn redeliver(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
    form: poem::Result<Form<CsrfForm>>,
) -> Response {
    let csrf = CsrfForm::token(form);
    let signed = or_page!(signed_post(&state, req, &csrf).await);
    let notice = match delivery_ops::redeliver(&state, &signed.identity(), &id).await {
        Ok((delivery, _)) => Notice::Done(format!(
            "Delivery {delivery} goes out again with a fresh retry schedule."
        )),
        Err(e) => e.into(),
    };
    render(&state, &signed, "", notice).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecoverForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    since: String,
}

#[handler]
pub(crate) async fn recover(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<RecoverForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request("since", "is missing"));
    };
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    // `datetime-local` sends `2026-12-07T10:30` (or with seconds); the console works in UTC.
    let since = NaiveDateTime::parse_from_str(&form.since, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(&form.since, "%Y-%m-%dT%H:%M:%S"))
        .map(|t| t.and_utc());
    let notice = match since {
        Err(_) => {
            ApiError::invalid_request("since", "must be a date and time (YYYY-MM-DDTHH:MM)").into()
        }
        Ok(since) => {
            match delivery_ops::recover(&state, &signed.identity(), since, Utc::now()).await {
                Ok(n) => Notice::Done(format!("{n} failed deliveries go out again.")),
                Err(e) => e.into(),
            }
        }
    };
    render(&state, &signed, "", notice).await
}
