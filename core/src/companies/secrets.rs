//! Random identifiers and credentials: verification ids, API keys and webhook secrets.
//!
//! Every value comes from the operating system's CSPRNG. API keys are stored only as argon2id
//! hashes; a key carries a public lookup id so the hash to check is found without hashing.

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{TryRng, rngs::SysRng};
use truenumber_entities::api_key::KeyMode;

/// The OS random source failed (practically never; surfaced as a 500).
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;

fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    SysRng.try_fill_bytes(&mut buf).map_err(|_| RandomError)?;
    Ok(buf)
}

/// A verification id: `ver_` and 128 random bits, URL-safe base64 (26 characters in all).
pub fn new_verification_id() -> Result<String, RandomError> {
    Ok(format!(
        "ver_{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<16>()?)
    ))
}

/// A console credential (sign-in link token, session cookie, CSRF token): 256 random bits,
/// URL-safe base64 (43 characters).
pub fn new_console_token() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A number-matching code: two decimal digits, uniform over `00`–`99` (a byte is drawn again
/// while it is 200 or more, so no digit pair is likelier than another).
pub fn new_match_code() -> Result<String, RandomError> {
    loop {
        let [b] = random_bytes::<1>()?;
        if b < 200 {
            return Ok(format!("{:02}", b % 100));
        }
    }
}

/// A Standard Webhooks signing secret: `whsec_` and 256 random bits, standard base64.
pub fn new_webhook_secret() -> Result<String, RandomError> {
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()?)
    ))
}

/// Prefix of every API key, so leaked keys are recognisable by secret scanners.
pub const API_KEY_PREFIX: &str = "tn_";

/// A newly made API key: the full key (shown once) and what is stored.
#[derive(Debug)]
pub struct NewApiKey {
    /// `tn_<mode>_<lookup id>_<secret>`: given to the company once, never stored.
    pub key: crate::config::Secret,
    /// The public part, stored in clear and shown in listings.
    pub lookup_id: String,
    /// argon2id PHC string of the whole key.
    pub hash: String,
    /// [`secret_check`] of the key, stored beside the hash.
    pub check: String,
}

/// Makes a key of `mode` (`tn_live_…` or `tn_test_…`): a 64-bit lookup id (hex) and a 256-bit
/// secret.
pub fn new_api_key(mode: KeyMode) -> Result<NewApiKey, KeyError> {
    let lookup_id = hex_lower(&random_bytes::<8>()?);
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let key = format!("{API_KEY_PREFIX}{}_{lookup_id}_{secret}", mode.as_str());
    let hash = hash_api_key(&key)?;
    let check = secret_check(&key);
    Ok(NewApiKey {
        key: crate::config::Secret::new(key),
        lookup_id,
        hash,
        check,
    })
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Failure to make or check a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// argon2 failed (bad stored hash or parameters).
    #[error("argon2: {0}")]
    Hash(String),
}

/// argon2id (the crate's defaults: 19 MiB, 2 passes) with a random salt from the OS, as a PHC string.
pub fn hash_api_key(key: &str) -> Result<String, KeyError> {
    Argon2::default()
        .hash_password(key.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| KeyError::Hash(e.to_string()))
}

/// A short check value of a key: the first 32 bits of its SHA-256, as 8 hex digits.
///
/// Stored beside the argon2id hash so that a wrong secret for a known key id is refused at the
/// cost of a SHA-256 instead of an argon2 run (which an outsider could otherwise trigger at
/// will). A random guess passes it with probability 2⁻³², and it gives away 32 of the secret's
/// 256 bits, leaving 224: no help to anyone holding a copy of the database.
pub fn secret_check(key: &str) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(key.as_bytes())[..4])
}

/// Whether `key` matches a stored [`secret_check`], compared in constant time.
pub fn secret_check_matches(key: &str, stored: &str) -> bool {
    use subtle::ConstantTimeEq;
    secret_check(key).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Checks a presented key against a stored hash (argon2 compares in constant time).
pub fn verify_api_key(key: &str, stored_hash: &str) -> Result<bool, KeyError> {
    let parsed = PasswordHash::new(stored_hash).map_err(|e| KeyError::Hash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(key.as_bytes(), &parsed)
        .is_ok())
}

/// What the shape of a presented key says before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    /// The mode its prefix names (`tn_live_`, `tn_test_`), or `None` for a key of the first
    /// form, `tn_<keyId>_<secret>`, which works as a live key.
    pub mode: Option<KeyMode>,
    /// The lookup id.
    pub lookup_id: &'a str,
}

/// The parts of a well-formed key, or `None` for anything that cannot be one of ours (so a
/// malformed bearer token is refused without touching the database).
pub fn api_key_parts(key: &str) -> Option<KeyParts<'_>> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    // A lookup id is hex, so `live_`/`test_` never begins a key of the first form.
    let (mode, rest) = match rest.split_at_checked(5) {
        Some(("live_", tail)) => (Some(KeyMode::Live), tail),
        Some(("test_", tail)) => (Some(KeyMode::Test), tail),
        _ => (None, rest),
    };
    let (lookup, secret) = rest.split_once('_')?;
    let lookup_ok = lookup.len() == 16 && lookup.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (lookup_ok && secret_ok).then_some(KeyParts {
        mode,
        lookup_id: lookup,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn match_codes_are_two_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..400).map(|_| new_match_code().unwrap()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_digit()))
        );
        // 400 uniform draws over 100 values miss more than half of them with probability
        // far below 1e-30.
        assert!(codes.len() > 50, "{} distinct codes", codes.len());
    }

    use super::*;

    #[test]
    fn verification_ids_are_long_random_and_url_safe() {
        let a = new_verification_id().unwrap();
        let b = new_verification_id().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("ver_"));
        assert_eq!(a.len(), 4 + 22);
        assert!(
            a[4..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn api_keys_round_trip_and_reject_others() {
        let k = new_api_key(KeyMode::Live).unwrap();
        let key = k.key.expose();
        assert!(key.starts_with("tn_live_"));
        assert_eq!(
            api_key_parts(key),
            Some(KeyParts {
                mode: Some(KeyMode::Live),
                lookup_id: k.lookup_id.as_str()
            })
        );
        let t = new_api_key(KeyMode::Test).unwrap();
        assert!(t.key.expose().starts_with("tn_test_"));
        assert_eq!(
            api_key_parts(t.key.expose()).map(|p| p.mode),
            Some(Some(KeyMode::Test))
        );
        assert!(k.hash.starts_with("$argon2id$"));
        assert!(verify_api_key(key, &k.hash).unwrap());
        let other = new_api_key(KeyMode::Live).unwrap();
        assert!(!verify_api_key(other.key.expose(), &k.hash).unwrap());
        assert!(verify_api_key(key, "not a hash").is_err());
        assert_eq!(k.check.len(), 8);
        assert!(secret_check_matches(key, &k.check));
        assert!(!secret_check_matches(other.key.expose(), &k.check));
        assert!(!secret_check_matches(key, ""));
    }

    #[test]
    fn malformed_keys_have_no_lookup_id() {
        for bad in [
            "",
            "tn_",
            "sk_live_abc",
            "tn_0123456789abcdef",
            "tn_0123456789abcdeg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "tn_0123456789abcdef_short",
            "tn_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "tn_prod_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "tn_live__AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "tn_live_0123456789abcdef",
        ] {
            assert_eq!(api_key_parts(bad), None, "{bad}");
        }
        // The first form: a live key without the mode in its prefix.
        assert_eq!(
            api_key_parts("tn_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Some(KeyParts {
                mode: None,
                lookup_id: "0123456789abcdef"
            })
        );
        assert_eq!(
            api_key_parts("tn_test_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            Some(KeyParts {
                mode: Some(KeyMode::Test),
                lookup_id: "0123456789abcdef"
            })
        );
    }

    #[test]
    fn webhook_secrets_are_standard_webhooks_shaped() {
        let s = new_webhook_secret().unwrap();
        let raw = s.strip_prefix("whsec_").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap();
        assert_eq!(bytes.len(), 32);
    }
}
