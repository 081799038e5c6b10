//! `/console/api-keys`: every key of the company (never a secret), create (shown once), roll
//! with an expiry, revoke.

use chrono::Utc;
use maud::html;
use poem::{
    Request, Response, handler,
    web::{Data, Form, Path},
};
use serde::Deserialize;
use truenumber_core::companies::{
    self,
    api_keys::{Scope, Scopes},
};
use truenumber_entities::api_key::KeyMode;

use super::{CsrfForm, Nav, Notice, Signed, bare_error, page, signed_in, signed_post, when};
use crate::{
    error::{ApiError, db_error},
    routes::company::api_keys,
    state::AppState,
};

/// The overlaps a roll offers (seconds, label).
const ROLL_OVERLAPS: [(u32, &str); 4] = [
    (0, "now"),
    (3_600, "in 1 hour"),
    (86_400, "in 1 day"),
    (604_800, "in 7 days"),
];

#[handler]
pub(crate) async fn show(state: Data<&AppState>, req: &Request) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    render(&state, &signed, Notice::None).await
}

async fn render(state: &AppState, signed: &Signed, notice: Notice) -> Response {
    let keys = match companies::list_keys(&state.db, &signed.company.company_id).await {
        Ok(k) => k,
        Err(e) => return bare_error(&db_error(e)),
    };
    let now = Utc::now();
    let main = html! {
        p { "Keys are shown once, when they are made. A test key (" code { "tn_test_…" } ") sees only test data." }
        div.table-wrap {
            table {
                caption { "Every key of your company, oldest first" }
                thead { tr {
                    th scope="col" { "Key" }
                    th scope="col" { "Mode" }
                    th scope="col" { "Scopes" }
                    th scope="col" { "State" }
                    th.hide-narrow scope="col" { "Last used" }
                    th scope="col" { "Actions" }
                } }
                tbody {
                    @for k in &keys {
                        @let revoked = k.revoked_at.is_some();
                        @let expired = k.expires_at.is_some_and(|t| t <= now);
                        @let name = k.label.clone().unwrap_or_else(|| k.key_id.clone());
                        tr {
                            td {
                                @if let Some(label) = &k.label { (label) br; }
                                code { (k.key_id) }
                            }
                            td { (k.mode.as_str()) }
                            td { @for s in k.scopes.list() { code { (s.as_str()) } " " } }
                            td {
                                @if let Some(t) = k.revoked_at { "revoked " (when(t)) }
                                @else if let Some(t) = k.expires_at {
                                    (if expired { "expired " } else { "expires " }) (when(t))
                                } @else { "active" }
                            }
                            td.hide-narrow { @if let Some(t) = k.last_used_at { (when(t)) } @else { "never" } }
                            td {
                                @if !revoked && !expired {
                                    form.inline method="post" action=(format!("/console/api-keys/{}/roll", k.key_id)) {
                                        (signed.csrf_field())
                                        label.sr-only for=(format!("roll-{}", k.key_id)) { "When the old key of " (name) " stops" }
                                        select id=(format!("roll-{}", k.key_id)) name="expires_in_seconds" {
                                            @for (secs, label) in ROLL_OVERLAPS {
                                                option value=(secs) selected[secs == 86_400] { "old key stops " (label) }
                                            }
                                        }
                                        " "
                                        button.secondary type="submit" aria-label=(format!("Roll {name}")) { "Roll" }
                                    }
                                    " "
                                    form.inline method="post" action=(format!("/console/api-keys/{}/revoke", k.key_id)) {
                                        (signed.csrf_field())
                                        button.danger type="submit" aria-label=(format!("Revoke {name}")) { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="create" {
            h2 #create { "Create a key" }
            form.stack method="post" action="/console/api-keys" {
                (signed.csrf_field())
                div.field {
                    label for="k-label" { "Label" span.hint { " (your name for it, e.g. “billing backend”)" } }
                    input #k-label.wide type="text" name="label" maxlength="255";
                }
                div.field {
                    label for="k-mode" { "Mode" }
                    select #k-mode name="mode" {
                        option value="live" selected[signed.session.livemode] { "live" }
                        option value="test" selected[!signed.session.livemode] { "test" }
                    }
                }
                fieldset {
                    legend { "Scopes" }
                    label.check { input type="checkbox" name="scope_verifications" value="on" checked; "verifications (initiate, status, listing)" }
                    label.check { input type="checkbox" name="scope_management" value="on" checked; "management (company settings, keys, webhooks, console)" }
                }
                div { button type="submit" { "Create key" } }
            }
        }
    };
    page(signed, Nav::ApiKeys, "API keys", &notice, main)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    scope_verifications: Option<String>,
    #[serde(default)]
    scope_management: Option<String>,
}

#[handler]
pub(crate) async fn create(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<CreateForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request("form", "is malformed"));
    };
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    let mode = match form.mode.as_str() {
        "live" => KeyMode::Live,
        "test" => KeyMode::Test,
        _ => {
            let e = ApiError::invalid_request("mode", "must be live or test");
            return render(&state, &signed, e.into()).await;
        }
    };
    let mut list = Vec::new();
    if form.scope_verifications.is_some() {
        list.push(Scope::Verifications);
    }
    if form.scope_management.is_some() {
        list.push(Scope::Management);
    }
    let Some(scopes) = Scopes::from_list(&list) else {
        let e = ApiError::invalid_request("scopes", "must name 1 or 2 scopes");
        return render(&state, &signed, e.into()).await;
    };
    let label = Some(form.label.trim().to_owned()).filter(|l| !l.is_empty());
    let notice =
        match api_keys::create(&state, &signed.live_identity(), Some(mode), scopes, label).await {
            Ok(issued) => Notice::Secret {
                what: format!("New {} API key {}", mode.as_str(), issued.key.key_id),
                value: issued.api_key,
                note: None,
            },
            Err(e) => e.into(),
        };
    render(&state, &signed, notice).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct RollForm {
    #[serde(default)]
    csrf: String,
    expires_in_seconds: u32,
}

#[handler]
pub(crate) async fn roll(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
    form: poem::Result<Form<RollForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request(
            "expiresInSeconds",
            "must be 0 to 604800",
        ));
    };
    let signed = or_page!(signed_post(&state, req, &form.csrf).await);
    let notice = match api_keys::roll(
        &state,
        &signed.live_identity(),
        &id,
        form.expires_in_seconds,
    )
    .await
    {
        Ok(rolled) => Notice::Secret {
            what: format!("New API key {} (rolled from {id})", rolled.key.key_id),
            value: rolled.api_key,
            note: Some(format!(
                "The old key stops at {}.",
                rolled
                    .previous_key_expires_at
                    .0
                    .format("%Y-%m-%d %H:%M:%S UTC")
            )),
        },
        Err(e) => e.into(),
    };
    render(&state, &signed, notice).await
}

#[handler]
pub(crate) async fn revoke(
    state: Data<&AppState>,
    req: &Request,
    Path(id): Path<String>,
    form: poem::Result<Form<CsrfForm>>,
) -> Response {
    let csrf = CsrfForm::token(form);
    let signed = or_page!(signed_post(&state, req, &csrf).await);
    let notice = match api_keys::revoke(&state, &signed.live_identity(), &id).await {
        Ok(()) => Notice::Done(format!(
            "API key {id} is revoked; it stops working at once."
        )),
        Err(e) => e.into(),
    };
    render(&state, &signed, notice).await
}
