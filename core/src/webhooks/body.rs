//! The webhook body, built in one place for every event type and both modes.
//!
//! An event row records what happened (its type, session, company, status, mode and time);
//! the body is rendered from it, and from its session, when the event is delivered
//! ([`crate::webhooks::deliveries::EventTarget::body`]). Every attempt of an event renders the
//! same bytes, because what it is rendered from never changes: a terminal session is never
//! changed again (retention and erasure delete it together with its events).
//!
//! The text is formatted as PostgreSQL's `jsonb` prints an object (keys ordered by length,
//! then bytewise; `": "` after a key and `", "` between members), which is what receivers got
//! when the body was stored as `jsonb`: their bytes, and so their signatures, did not change
//! when the body moved here.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::{EVENT_TYPE, Terminal, WEBHOOK_TEST};

/// The body of one webhook.
#[derive(Debug, Clone, Copy)]
pub enum WebhookBody<'a> {
    /// `verification.completed`: a session became terminal.
    Completed(Terminal<'a>),
    /// `webhook.test`: a company's check of its endpoint.
    Test(TestBody<'a>),
}

/// What a `webhook.test` body says.
#[derive(Debug, Clone, Copy)]
pub struct TestBody<'a> {
    /// The company that asked for it.
    pub company_id: &'a str,
    /// The mode of the key that asked.
    pub livemode: bool,
    /// When it was asked for (the body's `timestamp`).
    pub created_at: DateTime<Utc>,
}

impl WebhookBody<'_> {
    /// The body's `event`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Completed(_) => EVENT_TYPE,
            Self::Test(_) => WEBHOOK_TEST,
        }
    }

    /// The body, exactly as signed and sent.
    pub fn render(&self) -> String {
        let event = ("event", Value::from(self.event_type()));
        let members = match self {
            Self::Completed(t) => {
                use sea_orm::ActiveEnum as _;
                vec![
                    event,
                    ("verificationId", t.verification_id.into()),
                    ("status", t.status.to_value().into()),
                    ("livemode", t.livemode.into()),
                    ("mobileNumber", t.mobile_number.into()),
                    ("verifiedAt", instant(t.verified_at)),
                    ("companyId", t.company_id.into()),
                    ("requestId", t.request_id.into()),
                    ("numberBinding", t.number_binding.map(|b| b.as_str()).into()),
                    ("phoneVerifiedAt", instant(t.phone_verified_at)),
                ]
            }
            Self::Test(t) => vec![
                event,
                ("companyId", t.company_id.into()),
                ("livemode", t.livemode.into()),
                ("timestamp", instant(Some(t.created_at))),
            ],
        };
        jsonb_text(members)
    }
}

/// An instant as the API document writes it: UTC, milliseconds, `Z`; or `null`.
fn instant(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |at| {
        at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string().into()
    })
}

/// A flat object as `jsonb::text` prints it.
fn jsonb_text(mut members: Vec<(&'static str, Value)>) -> String {
    members.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    let mut out = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&Value::from(*key).to_string());
        out.push_str(": ");
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use truenumber_entities::verification_session::{NumberBinding, SessionStatus};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_completed_body_is_formatted_as_jsonb_prints_it() {
        let verified = at("2026-11-23T10:00:01.234567Z");
        let t = Terminal {
            verification_id: "ver_1",
            company_id: "acme",
            request_id: "r\"1",
            mobile_number: "+447911123456",
            status: SessionStatus::Verified,
            verified_at: Some(verified),
            livemode: true,
            number_binding: Some(NumberBinding::AppToken),
            phone_verified_at: Some(verified - chrono::Duration::days(3)),
        };
        assert_eq!(
            WebhookBody::Completed(t).render(),
            "{\"event\": \"verification.completed\", \"status\": \"verified\", \
             \"livemode\": true, \"companyId\": \"acme\", \"requestId\": \"r\\\"1\", \
             \"verifiedAt\": \"2026-11-23T10:00:01.234Z\", \"mobileNumber\": \"+447911123456\", \
             \"numberBinding\": \"app_token\", \"verificationId\": \"ver_1\", \
             \"phoneVerifiedAt\": \"2026-11-20T10:00:01.234Z\"}"
        );
        let expired = WebhookBody::Completed(Terminal {
            status: SessionStatus::Expired,
            verified_at: None,
            number_binding: None,
            phone_verified_at: None,
            ..t
        })
        .render();
        assert!(expired.contains("\"status\": \"expired\""), "{expired}");
        assert!(expired.contains("\"verifiedAt\": null"));
        assert!(expired.contains("\"numberBinding\": null"));
        assert!(expired.contains("\"phoneVerifiedAt\": null"));
        let unbound = WebhookBody::Completed(Terminal {
            number_binding: Some(NumberBinding::None),
            ..t
        });
        assert!(unbound.render().contains("\"numberBinding\": \"none\""));
        let test_mode = WebhookBody::Completed(Terminal {
            livemode: false,
            ..t
        });
        assert!(test_mode.render().contains("\"livemode\": false, "));
        assert_eq!(test_mode.event_type(), "verification.completed");
        // Valid JSON with the API document's ten members.
        let parsed: Value = serde_json::from_str(&WebhookBody::Completed(t).render()).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 10);
        assert_eq!(parsed["requestId"], "r\"1");
    }

    #[test]
    fn a_test_body_is_formatted_like_every_other() {
        let body = WebhookBody::Test(TestBody {
            company_id: "acme",
            livemode: false,
            created_at: at("2026-12-08T09:30:00.5Z"),
        });
        assert_eq!(body.event_type(), "webhook.test");
        assert_eq!(
            body.render(),
            "{\"event\": \"webhook.test\", \"livemode\": false, \"companyId\": \"acme\", \
             \"timestamp\": \"2026-12-08T09:30:00.500Z\"}"
        );
    }
}
