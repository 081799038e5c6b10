//! `/console/settings`: the limits and retention in force, the countries the company serves
//! (set here), and the abuse controls in force (blocks, cooldowns, refusals).

use chrono::{Duration, Utc};
use maud::html;
use poem::{
    Request, Response, handler,
    web::{Data, Form},
};
use serde::Deserialize;
use truenumber_core::{
    abuse::{self, countries, refusals},
    companies::policy::Overrides,
};

use super::{Nav, Notice, Signed, bare_error, page, signed_in, signed_post};
use crate::{
    error::{ApiError, db_error},
    routes::company::profile,
    state::AppState,
};

#[handler]
pub(crate) async fn show(state: Data<&AppState>, req: &Request) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    render(&state, &signed, Notice::None).await
}

fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "off".to_owned(),
        s if s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

async fn render(state: &AppState, signed: &Signed, notice: Notice) -> Response {
    let company = &signed.company.company_id;
    let live = signed.session.livemode;
    let policy = Overrides::from_row(&signed.company).in_force(&state.config);
    let now = Utc::now();
    let cooldown = chrono::Duration::from_std(policy.deny_cooldown).unwrap_or(Duration::MAX);
    let controls = match abuse::in_force(&state.db, company, live, now - cooldown).await {
        Ok(c) => c,
        Err(e) => return bare_error(&db_error(e)),
    };
    let mut refused = Vec::new();
    for (label, span) in [
        ("Last 24 hours", Duration::hours(24)),
        ("Last 30 days", Duration::days(30)),
    ] {
        match refusals::counts(&state.db, company, live, now - span, now).await {
            Ok(c) => refused.push((label, c)),
            Err(e) => return bare_error(&db_error(e)),
        }
    }
    let allowed = countries::from_column(signed.company.allowed_countries.as_deref());
    let main = html! {
        section.card aria-labelledby="limits" {
            h2 #limits { "Rate limits in force" }
            dl.facts {
                dt { "Initiations" } dd { (policy.initiate_per_hour) " per hour" }
                dt { "Status reads" } dd { (policy.status_per_hour) " per hour" }
                dt { "App submissions" } dd { (policy.submit_per_minute) " per minute per session" }
                dt { "Initiations per number" } dd { (policy.initiate_per_number) " per " (seconds(policy.initiate_per_number_window)) }
            }
            p.hint { "Live and test requests count apart. Your TrueNumber operator changes these." }
        }
        section.card aria-labelledby="retention" {
            h2 #retention { "Retention" }
            p { "Completed sessions are deleted " (policy.data_retention_days) " days after they complete, with their events and webhook deliveries." }
        }
        section.card aria-labelledby="countries" {
            h2 #countries { "Allowed countries" }
            p {
                @if allowed.is_empty() { "Every country is allowed." }
                @else { "Numbers of these regions only: " strong { (allowed.join(", ")) } }
            }
            form.stack method="post" action="/console/settings/countries" {
                (signed.csrf_field())
                div.field {
                    label for="s-countries" {
                        "Allowed countries"
                        span.hint { " — ISO 3166-1 alpha-2 codes separated by commas or spaces (e.g. GB, JE, GG, IM); empty allows every country" }
                    }
                    input #s-countries.wide type="text" name="countries" value=(allowed.join(", ")) maxlength="1200";
                }
                div { button type="submit" { "Save countries" } }
            }
        }
        section.card aria-labelledby="controls" {
            h2 #controls { "Blocks and cooldowns in force" }
            dl.facts {
                dt { "Numbers that blocked you" } dd { (controls.blocks) }
                dt { "Deny cooldown" } dd { (seconds(policy.deny_cooldown)) " after a “not me”" }
                dt { "Numbers in a cooldown now" } dd { (controls.cooldowns) }
            }
            div.table-wrap {
                table {
                    caption { "Initiations refused by these controls" }
                    thead { tr {
                        th scope="col" { "Window" }
                        th.num scope="col" { "Per-number limit" }
                        th.num scope="col" { "Recently denied" }
                        th.num scope="col" { "Blocked by user" }
                        th.num scope="col" { "Country not allowed" }
                    } }
                    tbody {
                        @for (label, c) in &refused {
                            tr {
                                th scope="row" { (label) }
                                td.num { (c.number_rate_limited) }
                                td.num { (c.recently_denied) }
                                td.num { (c.blocked_by_user) }
                                td.num { (c.country_not_allowed) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(signed, Nav::Settings, "Settings", &notice, main)
}

#[derive(Debug, Deserialize)]
pub(crate) struct CountriesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    countries: String,
}

#[handler]
pub(crate) async fn set_countries(
    state: Data<&AppState>,
    req: &Request,
    form: poem::Result<Form<CountriesForm>>,
) -> Response {
    let Ok(Form(form)) = form else {
        return bare_error(&ApiError::invalid_request("countries", "is malformed"));
    };
    let mut signed = or_page!(signed_post(&state, req, &form.csrf).await);
    let codes: Vec<String> = form
        .countries
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let notice = match profile::set_allowed_countries(&state, &signed.live_identity(), &codes).await
    {
        Ok(stored) => {
            let done = if stored.is_empty() {
                "Every country is allowed now.".to_owned()
            } else {
                format!("Allowed countries saved: {}.", stored.join(", "))
            };
            signed.company.allowed_countries = countries::to_column(&stored);
            Notice::Done(done)
        }
        Err(e) => e.into(),
    };
    render(&state, &signed, notice).await
}
