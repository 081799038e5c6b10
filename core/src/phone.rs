//! Mobile-number rules: what a caller may send, and the one E.164 form we store and compare.

use phonenumber::{
    Mode, Type,
    metadata::{DATABASE, Database, Metadata},
};

/// Why a mobile number was refused; the `Display` is the public message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Empty after formatting was removed.
    #[error("is empty")]
    Empty,
    /// Not `+` followed by digits once spaces, `-`, `.` and `()` are removed.
    #[error("must be in E.164 form: `+`, country code and number, digits only")]
    NotE164,
    /// Too many digits for E.164 (at most 15).
    #[error("has more than 15 digits")]
    TooLong,
    /// libphonenumber could not parse it (bad country code, too short, …).
    #[error("is not a phone number: {0}")]
    Unparseable(String),
    /// Parsed, but not a number that any operator has assigned.
    #[error("is not a valid number for its country")]
    Invalid,
    /// Valid, but of a type that cannot be a mobile (fixed line, toll-free, premium, …).
    #[error("is a {0} number, not one that can be a mobile")]
    NotMobile(&'static str),
}

/// A validated mobile number in E.164 form (`+` and digits), with the region libphonenumber
/// assigns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MobileNumber(String, &'static str);

impl MobileNumber {
    /// The E.164 string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes into the E.164 string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The number's region (ISO 3166-1 alpha-2), as libphonenumber's `getRegionCodeForNumber`
    /// decides it from the number itself, not from its country calling code alone: `+1 416…`
    /// is `CA`, `+1 415…` is `US`; `+44 7797…` is `JE` (Jersey), `+44 7911…` is `GB`. Numbers
    /// of no region (the `+800`-style global services) are `001`.
    pub fn region(&self) -> &'static str {
        self.1
    }
}

/// Whether `code` is a region libphonenumber knows (ISO 3166-1 alpha-2, upper case): what a
/// company's allowed countries may name.
pub fn is_known_region(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_uppercase())
        && DATABASE.by_id(code).is_some()
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

/// The metadata of a number's region, chosen as libphonenumber's `getRegionCodeForNumber`
/// does: the only region of the country code, or the first whose leading digits (or, lacking
/// those, whose number patterns) match the national significant number.
fn region_metadata<'a>(db: &'a Database, code: u16, nsn: &str) -> Option<&'a Metadata> {
    let regions = db.region(&code)?;
    if let [only] = regions.as_slice() {
        return if *only == "001" {
            db.by_code(&code)?.into_iter().next()
        } else {
            db.by_id(*only)
        };
    }
    regions
        .into_iter()
        .filter_map(|r| db.by_id(r))
        .find(|meta| match meta.leading_digits() {
            Some(pattern) => pattern.find(nsn).is_some_and(|m| m.start() == 0),
            None => number_type(meta, nsn) != Type::Unknown,
        })
}

/// libphonenumber's `getNumberTypeHelper`: the first of the region's number patterns that the
/// national significant number matches, in libphonenumber's order.
fn number_type(meta: &Metadata, nsn: &str) -> Type {
    let d = meta.descriptors();
    let is = |t: Type| d.get(t).is_some_and(|x| x.is_match(nsn));
    if !d.general().is_match(nsn) {
        return Type::Unknown;
    }
    for t in [
        Type::PremiumRate,
        Type::TollFree,
        Type::SharedCost,
        Type::Voip,
        Type::PersonalNumber,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
    ] {
        if is(t) {
            return t;
        }
    }
    if is(Type::FixedLine) {
        let pattern = |t: Type| d.get(t).map(|x| x.national_number().as_str());
        let shared = pattern(Type::FixedLine) == pattern(Type::Mobile);
        return if shared || is(Type::Mobile) {
            Type::FixedLineOrMobile
        } else {
            Type::FixedLine
        };
    }
    if is(Type::Mobile) {
        return Type::Mobile;
    }
    Type::Unknown
}

/// Strips formatting (spaces, `-`, `.`, `(`, `)`), requires `+` and digits, and checks with
/// libphonenumber metadata that the number is valid and can be a mobile (`Mobile` or
/// `FixedLineOrMobile`, the latter covering countries such as the US that share ranges).
///
/// The type is decided on the national significant number *with* its leading zeros, as
/// libphonenumber does. (The `phonenumber` crate's own `number_type` drops them, which made
/// the Italian landline `+39 0331 234567` look like the mobile `331 234567`.) Doing the region
/// lookup once also halves the regex work of the crate's `is_valid` + `number_type`.
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
    let nsn = parsed.national().to_string();
    let meta =
        region_metadata(&DATABASE, parsed.code().value(), &nsn).ok_or(PhoneError::Invalid)?;
    match number_type(meta, &nsn) {
        Type::Mobile | Type::FixedLineOrMobile => {}
        Type::Unknown => return Err(PhoneError::Invalid),
        other => return Err(PhoneError::NotMobile(type_name(other))),
    }
    Ok(MobileNumber(
        parsed.format().mode(Mode::E164).to_string(),
        meta.id(),
    ))
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
    fn the_region_is_the_numbers_not_its_calling_codes() {
        for (number, region) in [
            // libphonenumber's own example number, and this project's favourite test number,
            // +44 7911 123456, is a Guernsey mobile: GG's leading digits claim 7911.
            ("+447911123456", "GG"),
            ("+447400123456", "GB"),
            ("+447797712345", "JE"),
            ("+447624123456", "IM"),
            ("+14155552671", "US"),
            ("+14165552671", "CA"),
            ("+33612345678", "FR"),
        ] {
            assert_eq!(
                parse_mobile_number(number).unwrap().region(),
                region,
                "{number}"
            );
        }
        assert!(is_known_region("JE") && is_known_region("GB") && is_known_region("CA"));
        for bad in ["gb", "XX", "G", "GBR", "001", ""] {
            assert!(!is_known_region(bad), "{bad}");
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
    fn leading_zeros_count_when_deciding_the_type() {
        // Italian landlines keep their 0; without it, 0331 234567 (Como) looked like the
        // mobile range 3xx.
        assert_eq!(
            parse_mobile_number("+39 0331 234567"),
            Err(PhoneError::NotMobile("fixed-line"))
        );
        assert_eq!(
            parse_mobile_number("+39 06 1234 5678"),
            Err(PhoneError::NotMobile("fixed-line"))
        );
        assert_eq!(
            parse_mobile_number("+39 331 234 5678").map(MobileNumber::into_string),
            Ok("+393312345678".to_owned())
        );
    }

    #[test]
    fn every_regions_example_numbers_are_classified_as_libphonenumber_says() {
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let cc = meta.country_code();
            let d = meta.descriptors();
            let example = |t: Type| {
                d.get(t)
                    .and_then(|x| x.example())
                    .map(|e| format!("+{cc}{e}"))
            };
            let shared = d.get(Type::FixedLine).map(|x| x.national_number().as_str())
                == d.get(Type::Mobile).map(|x| x.national_number().as_str());
            if let Some(mobile) = example(Type::Mobile) {
                // Agree with the crate on validity (same region lookup, same patterns).
                let parsed = phonenumber::parse(None, &mobile).unwrap();
                assert!(parsed.is_valid(), "{mobile}");
                assert!(
                    parse_mobile_number(&mobile).is_ok(),
                    "{} mobile example {mobile}: {:?}",
                    meta.id(),
                    parse_mobile_number(&mobile)
                );
                checked += 1;
            }
            if let Some(fixed) = example(Type::FixedLine)
                && !shared
                && phonenumber::parse(None, &fixed).is_ok_and(|p| p.is_valid())
            {
                let nsn = fixed.trim_start_matches(&format!("+{cc}"));
                let also_mobile = d.get(Type::Mobile).is_some_and(|m| m.is_match(nsn));
                if !also_mobile {
                    assert!(
                        parse_mobile_number(&fixed).is_err(),
                        "{} fixed-line example {fixed} was accepted",
                        meta.id()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 300, "only {checked} examples checked");
    }

    #[test]
    fn messages_say_why() {
        assert_eq!(
            PhoneError::NotMobile("fixed-line").to_string(),
            "is a fixed-line number, not one that can be a mobile"
        );
    }
}
