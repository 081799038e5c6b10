//! sea-orm entities of TrueNumber's tables, one module per table. No HTTP types here: DTOs
//! live in the API crate. Statuses are typed enums ([`DeriveActiveEnum`]): a row whose status
//! is not one of its enum's values fails to decode rather than being guessed.
//!
//! [`DeriveActiveEnum`]: sea_orm::DeriveActiveEnum

pub mod api_key;
pub mod company;
pub mod console_link;
pub mod console_session;
pub mod deny_cooldown;
pub mod initiation_refusal;
pub mod number_block;
pub mod verification_event;
pub mod verification_session;
pub mod webhook_attempt;
pub mod webhook_delivery;

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use crate::{
        verification_event::EventStatus, verification_session::SessionStatus,
        webhook_delivery::DeliveryStatus,
    };

    /// Every variant writes the text its column's CHECK constraint admits and reads back from
    /// it; anything else is refused.
    fn round_trips<E: ActiveEnum<Value = String> + Iterable + PartialEq + std::fmt::Debug>(
        stored: &[&str],
    ) {
        let written: Vec<String> = E::iter().map(|e| e.to_value()).collect();
        assert_eq!(written, stored);
        for s in stored {
            let e = E::try_from_value(&(*s).to_owned()).expect(s);
            assert_eq!(e.to_value(), *s);
        }
        for bad in ["", "unknown", "Pending", "PENDING", "pending "] {
            assert!(
                E::try_from_value(&bad.to_owned()).is_err(),
                "{bad:?} decoded"
            );
        }
    }

    #[test]
    fn session_status_round_trips() {
        round_trips::<SessionStatus>(&["pending", "verified", "failed", "denied", "expired"]);
        for s in SessionStatus::iter() {
            assert_eq!(s.as_str(), s.to_value());
        }
    }

    #[test]
    fn event_status_round_trips() {
        round_trips::<EventStatus>(&["verified", "failed", "denied", "expired"]);
    }

    #[test]
    fn delivery_status_round_trips() {
        round_trips::<DeliveryStatus>(&["pending", "succeeded", "failed"]);
        for s in DeliveryStatus::iter() {
            assert_eq!(serde_json_string(s), s.to_value());
        }
    }

    fn serde_json_string(s: DeliveryStatus) -> String {
        match serde_json::to_value(s).expect("serializes") {
            serde_json::Value::String(s) => s,
            other => panic!("{other:?}"),
        }
    }
}
