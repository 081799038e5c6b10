//! Rules for free-text identifiers that companies and the app send (`requestId`, `appUserId`):
//! they reach logs, webhooks and support screens, so each must show something, and nothing in
//! it may hide or reorder the text around it.

/// Why an identifier is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// Only white space, invisible or format characters.
    #[error("must contain a visible character")]
    NothingVisible,
    /// A control character (C0, DEL, C1).
    #[error("must not contain control characters")]
    Control,
    /// A format character (general category Cf): zero-width characters, bidirectional
    /// overrides and isolates, the BOM, soft hyphen, tags.
    #[error("must not contain invisible format or bidirectional control characters")]
    Format,
}

/// Unicode general category Cf (format), as ranges (Unicode 16).
const FORMAT_CHARACTERS: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character (category Cf).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARACTERS
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// Checks an identifier: no control or format characters, and at least one visible one.
pub fn check_identifier(value: &str) -> Result<(), IdentifierError> {
    if value.chars().any(char::is_control) {
        return Err(IdentifierError::Control);
    }
    if value.chars().any(is_format) {
        return Err(IdentifierError::Format);
    }
    // Everything left that is not white space renders as something.
    if value.chars().all(char::is_whitespace) {
        return Err(IdentifierError::NothingVisible);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_identifiers_pass() {
        for ok in ["req_1", "user-42", "Zoë", "用户", "a b", "😀", "x\u{0301}"] {
            assert_eq!(check_identifier(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn invisible_and_hiding_characters_are_refused() {
        assert_eq!(
            check_identifier("\u{202E}\u{200B}"),
            Err(IdentifierError::Format)
        );
        assert_eq!(
            check_identifier("abc\u{2066}def"),
            Err(IdentifierError::Format)
        );
        assert_eq!(
            check_identifier("\u{FEFF}req"),
            Err(IdentifierError::Format)
        );
        assert_eq!(
            check_identifier("tag\u{E0041}"),
            Err(IdentifierError::Format)
        );
        assert_eq!(check_identifier("a\u{0007}"), Err(IdentifierError::Control));
        assert_eq!(check_identifier("a\u{0085}"), Err(IdentifierError::Control));
        assert_eq!(
            check_identifier(" \u{3000}\u{00A0}"),
            Err(IdentifierError::NothingVisible)
        );
        assert_eq!(check_identifier(""), Err(IdentifierError::NothingVisible));
    }

    #[test]
    fn the_format_table_is_sorted_and_disjoint() {
        for w in FORMAT_CHARACTERS.windows(2) {
            assert!(w[0].0 <= w[0].1 && w[0].1 < w[1].0, "{w:?}");
        }
    }
}
