//! `/console`: counts and conversion over 24 h / 7 d / 30 d, the median time to verify,
//! sessions per day by outcome (an SVG drawn here) and the breakdown by country.

use std::fmt::Write as _;

use chrono::{Duration, DurationRound as _, Utc};
use maud::{Markup, html};
use poem::{Request, Response, handler, web::Data};
use truenumber_core::verification::{
    listing::{self, Summary},
    stats::{self, CountryCounts, DayCounts},
};

use super::{Nav, Notice, Signed, bare_error, page, signed_in, trusted};
use crate::{error::db_error, state::AppState};

/// How many days the chart shows.
const CHART_DAYS: i64 = 30;

#[handler]
pub(crate) async fn show(state: Data<&AppState>, req: &Request) -> Response {
    let signed = or_page!(signed_in(&state, req).await);
    match render(&state, &signed).await {
        Ok(main) => page(&signed, Nav::Overview, "Overview", &Notice::None, main),
        Err(resp) => resp,
    }
}

async fn render(state: &AppState, signed: &Signed) -> Result<Markup, Response> {
    let company = &signed.company.company_id;
    let live = signed.session.livemode;
    let now = Utc::now();
    let mut windows = Vec::new();
    for (label, span) in [
        ("Last 24 hours", Duration::hours(24)),
        ("Last 7 days", Duration::days(7)),
        ("Last 30 days", Duration::days(30)),
    ] {
        let s = listing::summarise(&state.db, company, live, now - span, now)
            .await
            .map_err(|e| bare_error(&db_error(e)))?;
        windows.push((label, s));
    }
    let first_day = (now - Duration::days(CHART_DAYS - 1))
        .duration_trunc(Duration::days(1))
        .unwrap_or(now);
    let days = stats::daily(&state.db, company, live, first_day, now)
        .await
        .map_err(|e| bare_error(&db_error(e)))?;
    let countries = stats::by_country(&state.db, company, live, now - Duration::days(30), now)
        .await
        .map_err(|e| bare_error(&db_error(e)))?;
    Ok(html! {
        div.grid {
            @for (label, s) in &windows { (window_card(label, s)) }
        }
        section.card.chart aria-labelledby="chart-title" {
            h2 #chart-title { "Sessions per day, last " (CHART_DAYS) " days" }
            (trusted(chart_svg(&days)))
            ul.legend {
                @for (class, name) in OUTCOMES { li { span.swatch.(class) {} (name) } }
            }
            details {
                summary { "The same numbers as a table" }
                (days_table(&days))
            }
        }
        section.card aria-labelledby="countries-title" {
            h2 #countries-title { "By country, last 30 days" }
            (countries_table(&countries))
        }
    })
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn window_card(label: &str, s: &Summary) -> Markup {
    html! {
        section.card.stat aria-label=(label) {
            h2 { (label) }
            dl {
                dt { "Sessions" } dd { (s.total) }
                dt { "Conversion" } dd { (percent(s.conversion_rate)) }
                dt { "Median time to verify" }
                dd { (s.median_seconds_to_verify.map_or_else(|| "—".to_owned(), |m| format!("{m:.1} s"))) }
            }
            p.hint {
                "Verified " (s.verified) " · denied " (s.denied) " · failed " (s.failed)
                " · expired " (s.expired) " · pending " (s.pending)
            }
        }
    }
}

/// The chart's series, bottom to top: CSS class and name.
const OUTCOMES: [(&str, &str); 5] = [
    ("sw-verified", "Verified"),
    ("sw-denied", "Denied"),
    ("sw-failed", "Failed"),
    ("sw-expired", "Expired"),
    ("sw-pending", "Pending"),
];

/// The fill of each series, in [`OUTCOMES`] order (the stylesheet's colours).
const FILLS: [&str; 5] = ["#1e7f4f", "#b3261e", "#6d4c9f", "#8a8f98", "#c98a00"];

/// A stacked bar per day. Built as text from numbers and fixed strings only (dates are
/// formatted by chrono), so there is nothing to escape; each bar has a `<title>` for screen
/// readers and tooltips.
fn chart_svg(days: &[DayCounts]) -> String {
    let (width, height, pad_left, pad_bottom) = (720.0_f64, 220.0_f64, 36.0_f64, 22.0_f64);
    let max = days.iter().map(DayCounts::total).max().unwrap_or(0).max(1);
    let plot_h = height - pad_bottom - 8.0;
    let n = days.len().max(1) as f64;
    let slot = (width - pad_left) / n;
    let bar = (slot * 0.7).max(1.0);
    let mut svg = String::new();
    let total: u64 = days.iter().map(DayCounts::total).sum();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-desc" xmlns="http://www.w3.org/2000/svg"><desc id="chart-desc">Stacked bars of sessions per day by outcome: {total} sessions over {} days, at most {max} in a day.</desc>"#,
        days.len()
    );
    // Axis: the maximum and zero.
    let _ = write!(
        svg,
        r##"<line x1="{pad_left}" y1="{y0}" x2="{width}" y2="{y0}" stroke="#8a939e"/><text x="{tx}" y="{ty}" font-size="11" text-anchor="end" fill="#505a66">{max}</text><text x="{tx}" y="{y0}" font-size="11" text-anchor="end" fill="#505a66">0</text>"##,
        y0 = height - pad_bottom,
        tx = pad_left - 4.0,
        ty = 8.0 + 10.0,
    );
    for (i, day) in days.iter().enumerate() {
        let x = pad_left + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = height - pad_bottom;
        let values = [
            day.verified,
            day.denied,
            day.failed,
            day.expired,
            day.pending,
        ];
        let _ = write!(
            svg,
            "<g><title>{}: {} sessions ({} verified, {} denied, {} failed, {} expired, {} pending)</title>",
            day.day.format("%Y-%m-%d"),
            day.total(),
            day.verified,
            day.denied,
            day.failed,
            day.expired,
            day.pending
        );
        for (value, fill) in values.iter().zip(FILLS) {
            if *value == 0 {
                continue;
            }
            let h = plot_h * (*value as f64) / (max as f64);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{fill}"/>"#
            );
        }
        // A transparent full-height target, so that the title shows on an empty day too.
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="8" width="{bar:.1}" height="{plot_h:.1}" fill="transparent"/></g>"#
        );
        // A date under every seventh bar and the last (not one too close to it).
        if (i % 7 == 0 && i + 4 <= days.len()) || i + 1 == days.len() {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle" fill="#505a66">{}</text>"##,
                x + bar / 2.0,
                height - 6.0,
                day.day.format("%b %d")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn days_table(days: &[DayCounts]) -> Markup {
    html! {
        div.table-wrap {
            table {
                caption { "Sessions per day (UTC) by outcome" }
                thead { tr {
                    th scope="col" { "Day" }
                    th.num scope="col" { "Verified" } th.num scope="col" { "Denied" }
                    th.num scope="col" { "Failed" } th.num scope="col" { "Expired" }
                    th.num scope="col" { "Pending" } th.num scope="col" { "Total" }
                } }
                tbody {
                    @for d in days.iter().rev() {
                        tr {
                            th scope="row" { (d.day.format("%Y-%m-%d")) }
                            td.num { (d.verified) } td.num { (d.denied) } td.num { (d.failed) }
                            td.num { (d.expired) } td.num { (d.pending) } td.num { (d.total()) }
                        }
                    }
                }
            }
        }
    }
}

fn countries_table(countries: &[CountryCounts]) -> Markup {
    html! {
        @if countries.is_empty() {
            p { "No sessions in the last 30 days." }
        } @else {
            div.table-wrap {
                table {
                    caption { "Sessions by the region of the number (libphonenumber's)" }
                    thead { tr {
                        th scope="col" { "Country" }
                        th.num scope="col" { "Sessions" }
                        th.num scope="col" { "Verified" }
                        th.num scope="col" { "Conversion" }
                    } }
                    tbody {
                        @for c in countries {
                            tr {
                                th scope="row" { (c.region) }
                                td.num { (c.total) }
                                td.num { (c.verified) }
                                td.num {
                                    (percent((c.finished > 0).then(|| c.verified as f64 / c.finished as f64)))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_title_per_day_and_scales_to_the_busiest() {
        let day = |d: u32, verified: u64, denied: u64| DayCounts {
            day: chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            verified,
            denied,
            ..DayCounts::default()
        };
        let svg = chart_svg(&[day(1, 0, 0), day(2, 3, 1), day(3, 8, 0)]);
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("2026-12-02: 4 sessions (3 verified, 1 denied"));
        assert!(svg.contains(">8</text>"), "the axis names the busiest day");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
