//! Opaque page cursors for keyset pagination: the last row's `(created_at, id)` as
//! `<microseconds>.<uuid>` in URL-safe base64. Clients pass `nextCursor` back as `cursor`; a
//! cursor that does not decode is `INVALID_REQUEST`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::DateTime;
use truenumber_core::webhooks::deliveries::PageAfter;
use uuid::Uuid;

use crate::error::ApiError;

/// The cursor of the page after `after`.
pub fn encode_cursor(after: PageAfter) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{}.{}",
        after.created_at.timestamp_micros(),
        after.id.simple()
    ))
}

/// Reads a cursor this API returned.
pub fn decode_cursor(cursor: &str) -> Result<PageAfter, ApiError> {
    let bad = || ApiError::invalid_request("cursor", "is not a cursor this API returned");
    let text =
        String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?).map_err(|_| bad())?;
    let (micros, id) = text.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(PageAfter {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        id: Uuid::parse_str(id).map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let after = PageAfter {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(after)).unwrap(), after);
        for bad in [
            "",
            "nonsense",
            "bm9fZG90",
            "MTIz.abc",
            &URL_SAFE_NO_PAD.encode("x.y"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
