//! Mobile-number rules: what a caller may send, and the one E.164 form we store and compare.

use phonenumber::{Mode, Type};

/// Why a mobile number was refused; the `Display` is the public message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Empty after formatting was removed.
    #[error("mobileNumber is empty")]
    Empty,
    /// Not `+` followed by digits once spaces, `-`, `.` and `()` are removed.
    #[error("mobileNumber must be in E.164 form: `+`, country code and number, digits only")]
    NotE164,
    /// Too many digits for E.164 (at most 15).
    #[error("mobileNumber has more than 15 digits")]
    TooLong,
    /// libphonenumber could not parse it (bad country code, too short, …).
    #[error("mobileNumber is not a phone number: {0}")]
    Unparseable(String),
    /// Parsed, but not a number that any operator has assigned.
    #[error("mobileNumber is not a valid number for its country")]
    Invalid,
    /// Valid, but of a type that cannot be a mobile (fixed line, toll-free, premium, …).
    #[error("mobileNumber is a {0} number, not one that can be a mobile")]
    NotMobile(&'static str),
}

/// A validated mobile number in E.164 form (`+` and digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobileNumber(String);

impl MobileNumber {
    /// The E.164 string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes into the E.164 string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for MobileNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::FixedLine => "fixed-line",
        Type::TollFree => "toll-free",
        Type::PremiumRate => "premium-rate",
        Type::SharedCost => "shared-cost",
        Type::PersonalNumber => "personal",
        Type::Voip => "VoIP",
        Type::Pager => "pager",
        Type::Uan => "UAN",
        Type::Voicemail => "voicemail",
        _ => "non-mobile",
    }
}

/// Strips formatting (spaces, `-`, `.`, `(`, `)`), requires `+` and digits, and checks with
/// libphonenumber metadata that the number is valid and can be a mobile (`Mobile` or
/// `FixedLineOrMobile`, the latter covering countries such as the US that share ranges).
pub fn parse_mobile_number(input: &str) -> Result<MobileNumber, PhoneError> {
    let stripped: String = input
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t' | '\u{a0}'))
        .collect();
    if stripped.is_empty() {
        return Err(PhoneError::Empty);
    }
    let digits = stripped.strip_prefix('+').ok_or(PhoneError::NotE164)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotE164);
    }
    if digits.len() > 15 {
        return Err(PhoneError::TooLong);
    }
    let parsed =
        phonenumber::parse(None, &stripped).map_err(|e| PhoneError::Unparseable(e.to_string()))?;
    if !parsed.is_valid() {
        return Err(PhoneError::Invalid);
    }
    match parsed.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile | Type::FixedLineOrMobile => {}
        other => return Err(PhoneError::NotMobile(type_name(other))),
    }
    Ok(MobileNumber(parsed.format().mode(Mode::E164).to_string()))
}

/// Loads libphonenumber's metadata now, so the first request does not pay for it.
pub fn warm_up() {
    let _ = parse_mobile_number("+447911123456");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_mobiles_and_normalises_formatting() {
        for (input, e164) in [
            ("+447911123456", "+447911123456"),
            ("+44 7911 123456", "+447911123456"),
            ("+44 (0)7911-123.456", "+447911123456"),
            ("+4915112345678", "+4915112345678"),
            ("+1 (415) 555-2671", "+14155552671"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+919876543210", "+919876543210"),
        ] {
            assert_eq!(
                parse_mobile_number(input).map(MobileNumber::into_string),
                Ok(e164.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_e164() {
        assert_eq!(parse_mobile_number(""), Err(PhoneError::Empty));
        assert_eq!(parse_mobile_number(" - "), Err(PhoneError::Empty));
        assert_eq!(parse_mobile_number("07911123456"), Err(PhoneError::NotE164));
        assert_eq!(parse_mobile_number("+44abc"), Err(PhoneError::NotE164));
        assert_eq!(parse_mobile_number("+"), Err(PhoneError::NotE164));
        assert_eq!(
            parse_mobile_number("+447911123456 ext 5"),
            Err(PhoneError::NotE164)
        );
        assert_eq!(
            parse_mobile_number("+1234567890123456"),
            Err(PhoneError::TooLong)
        );
    }

    #[test]
    fn refuses_invalid_and_non_mobile_numbers() {
        // The API document's own example is not an assigned number.
        assert!(matches!(
            parse_mobile_number("+1234567890"),
            Err(PhoneError::Invalid | PhoneError::Unparseable(_))
        ));
        // A London landline, a UK freephone and a UK premium-rate number.
        assert_eq!(
            parse_mobile_number("+442079460000"),
            Err(PhoneError::NotMobile("fixed-line"))
        );
        assert_eq!(
            parse_mobile_number("+448001111111"),
            Err(PhoneError::NotMobile("toll-free"))
        );
        assert_eq!(
            parse_mobile_number("+449098790000"),
            Err(PhoneError::NotMobile("premium-rate"))
        );
        // Country code 999 does not exist.
        assert!(matches!(
            parse_mobile_number("+999123456789"),
            Err(PhoneError::Unparseable(_) | PhoneError::Invalid)
        ));
    }

    #[test]
    fn messages_say_why() {
        assert_eq!(
            PhoneError::NotMobile("fixed-line").to_string(),
            "mobileNumber is a fixed-line number, not one that can be a mobile"
        );
    }
}
