//! The countries a company serves: its `allowedCountries`, ISO 3166-1 alpha-2 codes of
//! libphonenumber's regions; an empty list allows every region. A number's region is
//! libphonenumber's for that number ([`MobileNumber::region`]), so `+1 416…` is `CA` and not
//! `US`, and Jersey, Guernsey and the Isle of Man (`JE`, `GG`, `IM`) are not `GB`: a company
//! that serves the UK and the Crown Dependencies lists all four.

use crate::phone::{MobileNumber, is_known_region};

/// The most codes a list may hold (every region fits).
pub const MAX_CODES: usize = 300;

/// Why a list of codes was refused; the `Display` is the public message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountryError {
    /// Not a region libphonenumber knows.
    #[error("allowedCountries: `{0}` is not an ISO 3166-1 alpha-2 region code (e.g. GB, US, JE)")]
    Unknown(String),
    /// Too many codes.
    #[error("allowedCountries: at most {MAX_CODES} codes")]
    TooMany,
}

/// Checks and normalises a list of codes: upper case, each known, duplicates dropped, sorted.
pub fn parse_codes<S: AsRef<str>>(codes: &[S]) -> Result<Vec<String>, CountryError> {
    if codes.len() > MAX_CODES {
        return Err(CountryError::TooMany);
    }
    let mut out: Vec<String> = Vec::with_capacity(codes.len());
    for code in codes {
        let raw = code.as_ref().trim();
        let upper = raw.to_ascii_uppercase();
        if !is_known_region(&upper) {
            return Err(CountryError::Unknown(raw.to_owned()));
        }
        out.push(upper);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The stored form: the codes comma-separated, `NULL` for "every region".
pub fn to_column(codes: &[String]) -> Option<String> {
    (!codes.is_empty()).then(|| codes.join(","))
}

/// The codes of the stored form.
pub fn from_column(stored: Option<&str>) -> Vec<String> {
    stored
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether a company with `allowed` may verify `number`: an empty list allows every region.
pub fn allows(allowed: &[String], number: &MobileNumber) -> bool {
    allowed.is_empty() || allowed.iter().any(|c| c == number.region())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::parse_mobile_number;

    #[test]
    fn codes_are_checked_normalised_and_stored() {
        assert_eq!(
            parse_codes(&["gb", " JE", "GB", "us"]).unwrap(),
            ["GB", "JE", "US"]
        );
        assert_eq!(
            parse_codes(&["GB", "UK"]),
            Err(CountryError::Unknown("UK".into()))
        );
        assert_eq!(
            parse_codes(&["001"]),
            Err(CountryError::Unknown("001".into()))
        );
        assert_eq!(parse_codes::<&str>(&[]).unwrap(), Vec::<String>::new());
        let many = vec!["GB"; MAX_CODES + 1];
        assert_eq!(parse_codes(&many), Err(CountryError::TooMany));
        let codes = parse_codes(&["FR", "GB"]).unwrap();
        assert_eq!(to_column(&codes).as_deref(), Some("FR,GB"));
        assert_eq!(from_column(Some("FR,GB")), codes);
        assert_eq!(to_column(&[]), None);
        assert!(from_column(None).is_empty());
    }

    #[test]
    fn a_number_is_allowed_by_its_own_region() {
        let gb = parse_mobile_number("+447400123456").unwrap();
        let jersey = parse_mobile_number("+447797712345").unwrap();
        let canada = parse_mobile_number("+14165552671").unwrap();
        let uk = ["GB".to_owned()];
        assert!(allows(&uk, &gb));
        assert!(!allows(&uk, &jersey));
        assert!(!allows(&["US".to_owned()], &canada));
        assert!(allows(&[], &canada));
    }
}
