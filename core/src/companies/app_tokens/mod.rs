//! Mobile-app tokens: JWTs signed either with `JWT_SECRET` (HS256) or by the app's own
//! identity provider with a public key that the token's `kid` header names, from
//! `APP_TOKEN_JWKS_FILE` or fetched from `APP_TOKEN_JWKS_URL` ([`remote`]) (EdDSA, ES256 or
//! RS256).
//!
//! `exp` and `sub` (the app user id) are required; `phone_number` binds the token to one
//! number and, in live mode, is required ([`AppClaims::binding`]). `nbf`, when present, is
//! enforced, and a token whose `iat` lies in the future is refused. Clock skew between the
//! token service and the API is allowed for with a leeway of [`LEEWAY_SECONDS`] on `exp`,
//! `nbf` and `iat`, and no more. When `APP_TOKEN_ISSUER` / `APP_TOKEN_AUDIENCE` are set, every
//! token (HS256 or not) must carry that `iss` / an `aud` naming that audience.
//!
//! Which key verifies a token is decided from its header alone, before any signature work:
//! - no key set configured: HS256 with `JWT_SECRET`, exactly as before key sets existed;
//! - a key set configured and no `kid`: HS256 with `JWT_SECRET` only;
//! - a `kid`: that key of the set, with that key's one algorithm. A `kid` outside the set, an
//!   `alg` other than the key's (HS256 included, so a public key is never used as an HMAC
//!   secret), and `crit` extensions are refused. With `APP_TOKEN_JWKS_URL`, an unknown `kid`
//!   first triggers one throttled refresh of the set ([`remote`]).
//!
//! `alg: none` never parses. Every key's [`DecodingKey`] and [`Validation`] are built once,
//! when its set is read, so a verification parses no key.

pub mod remote;

use std::{collections::HashMap, fmt, io::Read as _, path::Path, sync::Arc};

use base64::Engine as _;
use jsonwebtoken::{
    Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use chrono::{DateTime, Utc};
pub use truenumber_entities::verification_session::NumberBinding;

use crate::config::{Config, Secret};

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat` (documented in docs/API.md).
pub const LEEWAY_SECONDS: u64 = 5;

/// The largest `APP_TOKEN_JWKS_FILE` read; a key set is a few kilobytes.
pub const MAX_JWKS_FILE_BYTES: u64 = 1024 * 1024;

/// The smallest RSA modulus accepted in a key set, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted in a key set, in bits (the verifier's own limit).
pub const MAX_RSA_BITS: usize = 8192;

/// The claims of an app token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppClaims {
    /// The app user id; must equal the submit body's `appUserId`.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The number the app's identity provider proved this user holds (OIDC's
    /// `phone_number`; any spelling that normalises to E.164): the only number this token may
    /// confirm, deny or see. Required in live mode unless `APP_TOKEN_REQUIRE_PHONE_NUMBER` is
    /// off ([`AppClaims::binding`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// OIDC's `phone_number_verified`; `false` means the provider has not proved the number,
    /// so the token binds nothing. Absent means proved (Firebase Auth's phone sign-in, for
    /// one, sends only `phone_number`). A string `"true"`/`"false"` is read as the boolean.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_bool"
    )]
    pub phone_number_verified: Option<bool>,
    /// OIDC's `auth_time`, seconds since the epoch: when the user last authenticated with the
    /// provider (proving the number). Reported to the company as `phoneVerifiedAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
}

/// `true`, `false`, or their string spellings (some providers send `"true"`).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!(
            "phone_number_verified must be a boolean, got {other}"
        ))),
    }
}

/// How a token ties its holder to a number, as the binding rules read it (PRODUCT.md, "App
/// identity and number binding").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBinding {
    /// The provider proved this number (E.164, normalised by the initiate rules), last at
    /// `phone_verified_at` when the token says.
    Bound {
        /// E.164.
        number: String,
        /// The token's `auth_time`.
        phone_verified_at: Option<DateTime<Utc>>,
    },
    /// No proved number: accepted only with `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`
    /// (development), and every session it completes says `numberBinding: "none"`.
    Unbound,
}

impl TokenBinding {
    /// The bound number, if any.
    pub fn number(&self) -> Option<&str> {
        match self {
            Self::Bound { number, .. } => Some(number),
            Self::Unbound => None,
        }
    }

    /// What the company is told about it.
    pub fn kind(&self) -> NumberBinding {
        match self {
            Self::Bound { .. } => NumberBinding::AppToken,
            Self::Unbound => NumberBinding::None,
        }
    }

    /// When the provider last proved the number, if the token says.
    pub fn phone_verified_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Bound {
                phone_verified_at, ..
            } => *phone_verified_at,
            Self::Unbound => None,
        }
    }
}

/// Why a token binds no number when one is required (403 `NUMBER_BINDING_REQUIRED`); the
/// `Display` is the public message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindingRefused {
    /// No `phone_number` claim.
    #[error(
        "This app token is not bound to a number: it must carry the phone_number your \
         identity provider verified"
    )]
    NoPhoneNumber,
    /// `phone_number_verified: false`.
    #[error("This app token's phone_number is not verified (phone_number_verified is false)")]
    NotVerified,
    /// A `phone_number` that is not a valid mobile number by the initiate rules.
    #[error("This app token's phone_number is not a valid mobile number")]
    Unparseable,
}

impl AppClaims {
    /// The token's binding under the rules: a verified `phone_number` binds it to that number
    /// (in any spelling that normalises to the same E.164); without one it is refused, unless
    /// `require_phone_number` is off (development), when it is [`TokenBinding::Unbound`]. A
    /// `phone_number` that is not a valid mobile number is refused either way: it claims a
    /// number it cannot hold.
    pub fn binding(&self, require_phone_number: bool) -> Result<TokenBinding, BindingRefused> {
        let unbound = |why| {
            if require_phone_number {
                Err(why)
            } else {
                Ok(TokenBinding::Unbound)
            }
        };
        let Some(claimed) = self.phone_number.as_deref() else {
            return unbound(BindingRefused::NoPhoneNumber);
        };
        if self.phone_number_verified == Some(false) {
            return unbound(BindingRefused::NotVerified);
        }
        let number = crate::phone::parse_mobile_number(claimed)
            .map_err(|_| BindingRefused::Unparseable)?
            .into_string();
        Ok(TokenBinding::Bound {
            number,
            phone_verified_at: self
                .auth_time
                .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0)),
        })
    }
}

/// What [`AppTokenKeys::mint`] signs: the claims, plus the configured `iss` and `aud` so that
/// the token passes the same configuration's checks.
#[derive(Serialize)]
struct MintedClaims<'a> {
    #[serde(flatten)]
    claims: &'a AppClaims,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Why a token was refused (never shown in detail to the caller).
#[derive(Debug, thiserror::Error)]
pub enum AppTokenError {
    /// Past its `exp`.
    #[error("the app token has expired")]
    Expired,
    /// Bad signature, shape, algorithm, key id or claims.
    #[error("the app token is invalid: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("could not sign the app token: {0}")]
    Signing(String),
}

/// Why an `APP_TOKEN_JWKS_FILE` was refused; each names the key at fault by its `kid` (or its
/// position when it has none).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {reason}")]
    Unreadable {
        /// The path as configured.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// Larger than [`MAX_JWKS_FILE_BYTES`].
    #[error("is larger than {MAX_JWKS_FILE_BYTES} bytes; a JWK Set of public keys is far smaller")]
    TooLarge,
    /// Not JSON at all.
    #[error("is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not `{"keys": [...]}`.
    #[error("must be a JWK Set (RFC 7517): a JSON object with a `keys` array")]
    NotAKeySet,
    /// `keys` is empty.
    #[error("holds no keys")]
    Empty,
    /// An entry of `keys` that is not a JSON object.
    #[error("key #{index} is not a JSON object")]
    NotAnObject {
        /// Its position in `keys`, from 0.
        index: usize,
    },
    /// A key without a (non-empty string) `kid`; tokens name their key by it.
    #[error("key #{index} has no `kid` (every key needs one: tokens name their key by it)")]
    MissingKid {
        /// Its position in `keys`, from 0.
        index: usize,
    },
    /// Two keys with one `kid`.
    #[error("two keys have kid `{0}`")]
    DuplicateKid(String),
    /// A private or symmetric key member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`).
    #[error(
        "key `{kid}` holds private key material (`{member}`); the file must hold public keys only \
         (and that private key should now be treated as exposed)"
    )]
    PrivateMaterial {
        /// The key.
        kid: String,
        /// The member found.
        member: &'static str,
    },
    /// A `kty`/`crv` other than OKP/Ed25519, EC/P-256 and RSA.
    #[error(
        "key `{kid}` is of an unsupported type ({found}); supported: kty OKP with crv Ed25519 \
         (EdDSA), kty EC with crv P-256 (ES256), kty RSA (RS256)"
    )]
    UnsupportedType {
        /// The key.
        kid: String,
        /// Its `kty`/`crv` as found.
        found: String,
    },
    /// An `alg` that is not the one its type allows.
    #[error("key `{kid}` has alg `{alg}`, but a key of its type can only be used with {expected}")]
    AlgMismatch {
        /// The key.
        kid: String,
        /// Its `alg`.
        alg: String,
        /// The algorithm its type allows.
        expected: &'static str,
    },
    /// `use` other than `sig`, or `key_ops` without `verify`.
    #[error("key `{kid}` is not for verifying signatures ({found})")]
    NotForSignatures {
        /// The key.
        kid: String,
        /// The `use` / `key_ops` found.
        found: String,
    },
    /// An RSA modulus shorter than [`MIN_RSA_BITS`] or longer than [`MAX_RSA_BITS`].
    #[error(
        "key `{kid}` is a {bits}-bit RSA key; RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
    )]
    RsaKeySize {
        /// The key.
        kid: String,
        /// Its modulus length.
        bits: usize,
    },
    /// Missing or malformed members (`x`, `y`, `n`, `e`).
    #[error("key `{kid}` is malformed: {reason}")]
    Malformed {
        /// The key.
        kid: String,
        /// What is wrong.
        reason: String,
    },
}

/// One public key of the key set, checked and ready to verify with.
#[derive(Clone)]
struct JwksKey {
    kid: String,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// The public keys of the app's own token service (`APP_TOKEN_JWKS_FILE`), checked when read:
/// every key has a unique `kid`, a supported type and its one algorithm, and no private part.
#[derive(Clone)]
pub struct AppTokenJwks {
    keys: Vec<JwksKey>,
}

impl fmt::Debug for AppTokenJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public keys are no secret, but their ids and algorithms are all a reader needs.
        f.debug_list()
            .entries(self.keys().map(|(kid, alg)| format!("{kid} ({alg:?})")))
            .finish()
    }
}

/// Members that only private or symmetric JWKs have (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl AppTokenJwks {
    /// Reads and checks a key-set file.
    pub fn from_file(path: &Path) -> Result<Self, JwksError> {
        let unreadable = |e: std::io::Error| JwksError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(unreadable)?
            .take(MAX_JWKS_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_JWKS_FILE_BYTES {
            return Err(JwksError::TooLarge);
        }
        Self::parse(&text)
    }

    /// Checks a key set given as JSON text.
    pub fn parse(json: &str) -> Result<Self, JwksError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        if entries.is_empty() {
            return Err(JwksError::Empty);
        }
        let mut keys: Vec<JwksKey> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let key = checked_key(index, entry)?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(JwksError::DuplicateKid(key.kid));
            }
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// Checks a key set published by an identity provider (`APP_TOKEN_JWKS_URL`): keys this
    /// server cannot use for app tokens (an encryption key, an unsupported type or size, a
    /// key without `kid`) are skipped and returned as reasons, where [`AppTokenJwks::parse`]
    /// refuses the whole file; private material and duplicate `kid`s still refuse the set,
    /// and so does a set left with no usable key.
    pub fn parse_published(json: &str) -> Result<(Self, Vec<JwksError>), JwksError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        let mut keys: Vec<JwksKey> = Vec::with_capacity(entries.len());
        let mut skipped = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            match checked_key(index, entry) {
                Ok(key) if keys.iter().any(|k| k.kid == key.kid) => {
                    return Err(JwksError::DuplicateKid(key.kid));
                }
                Ok(key) => keys.push(key),
                Err(e @ (JwksError::PrivateMaterial { .. } | JwksError::NotAnObject { .. })) => {
                    return Err(e);
                }
                Err(e) => skipped.push(e),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok((Self { keys }, skipped))
    }

    /// Each key's `kid` and algorithm, in file order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, Algorithm)> {
        self.keys.iter().map(|k| (k.kid.as_str(), k.algorithm))
    }
}

/// One entry of `keys`, checked member by member on the raw JSON first (serde would silently
/// drop a private `d`), then built with jsonwebtoken's own JWK type.
fn checked_key(index: usize, entry: &Value) -> Result<JwksKey, JwksError> {
    let object = entry.as_object().ok_or(JwksError::NotAnObject { index })?;
    let kid = object
        .get("kid")
        .and_then(Value::as_str)
        .filter(|kid| !kid.is_empty())
        .ok_or(JwksError::MissingKid { index })?
        .to_owned();
    if let Some(member) = PRIVATE_MEMBERS
        .into_iter()
        .find(|m| object.contains_key(*m))
    {
        return Err(JwksError::PrivateMaterial { kid, member });
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    let algorithm = match (text("kty"), text("crv")) {
        (Some("OKP"), Some("Ed25519")) => Algorithm::EdDSA,
        (Some("EC"), Some("P-256")) => Algorithm::ES256,
        (Some("RSA"), _) => Algorithm::RS256,
        (kty, crv) => {
            return Err(JwksError::UnsupportedType {
                kid,
                found: format!(
                    "kty {}, crv {}",
                    kty.unwrap_or("missing"),
                    crv.unwrap_or("missing")
                ),
            });
        }
    };
    let expected = algorithm_name(algorithm);
    match object.get("alg") {
        None => {}
        Some(Value::String(alg)) if alg == expected => {}
        Some(other) => {
            return Err(JwksError::AlgMismatch {
                kid,
                alg: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_owned),
                expected,
            });
        }
    }
    if let Some(found) = not_for_signatures(object) {
        return Err(JwksError::NotForSignatures { kid, found });
    }
    let malformed = |kid: &str, reason: String| JwksError::Malformed {
        kid: kid.to_owned(),
        reason,
    };
    let jwk: Jwk =
        serde_json::from_value(entry.clone()).map_err(|e| malformed(&kid, e.to_string()))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| malformed(&kid, e.to_string()))?;
    match (algorithm, &jwk.algorithm, key.kind()) {
        (
            Algorithm::EdDSA,
            AlgorithmParameters::OctetKeyPair(p),
            DecodingKeyKind::SecretOrDer(x),
        ) if p.curve == EllipticCurve::Ed25519 => {
            if x.len() != 32 {
                return Err(malformed(&kid, format!("x has {} bytes, not 32", x.len())));
            }
        }
        (Algorithm::ES256, AlgorithmParameters::EllipticCurve(p), _)
            if p.curve == EllipticCurve::P256 =>
        {
            for (name, coordinate) in [("x", &p.x), ("y", &p.y)] {
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(coordinate)
                    .map_err(|e| malformed(&kid, format!("{name}: {e}")))?;
                if bytes.len() != 32 {
                    return Err(malformed(
                        &kid,
                        format!("{name} has {} bytes, not 32", bytes.len()),
                    ));
                }
            }
        }
        (
            Algorithm::RS256,
            AlgorithmParameters::RSA(_),
            DecodingKeyKind::RsaModulusExponent { n, e },
        ) => {
            let bits = significant_bits(n);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(JwksError::RsaKeySize { kid, bits });
            }
            // A public exponent is odd and at least 3; anything else is a broken key.
            let exponent_ok =
                (2..=64).contains(&significant_bits(e)) && e.last().is_some_and(|b| b & 1 == 1);
            if !exponent_ok {
                return Err(malformed(
                    &kid,
                    "e is not an odd exponent of at least 3".into(),
                ));
            }
        }
        _ => {
            return Err(malformed(
                &kid,
                format!(
                    "missing or malformed members for {}",
                    match algorithm {
                        Algorithm::EdDSA => "kty OKP (needs crv, x)",
                        Algorithm::ES256 => "kty EC (needs crv, x, y)",
                        _ => "kty RSA (needs n, e)",
                    }
                ),
            ));
        }
    }
    Ok(JwksKey {
        kid,
        algorithm,
        key,
    })
}

/// `Some(what was found)` when `use` or `key_ops` rule out verifying signatures.
fn not_for_signatures(object: &serde_json::Map<String, Value>) -> Option<String> {
    if let Some(usage) = object.get("use")
        && usage.as_str() != Some("sig")
    {
        return Some(format!("use {usage}"));
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Some(format!("key_ops {ops}"));
        }
    }
    None
}

/// The bit length of a big-endian unsigned integer (leading zero bytes ignored).
fn significant_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

/// The JOSE name of a key-set key's algorithm (one of the three [`checked_key`] assigns).
fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        _ => "RS256",
    }
}

/// What app tokens are trusted besides HS256 with `JWT_SECRET`, and which `iss`/`aud` every
/// token must carry (`APP_TOKEN_JWKS_FILE` or `APP_TOKEN_JWKS_URL`, `APP_TOKEN_ISSUER`,
/// `APP_TOKEN_AUDIENCE`).
#[derive(Clone, Debug, Default)]
pub struct AppTokenTrust {
    /// `APP_TOKEN_JWKS_FILE`, read and checked at start-up: the token service's public keys.
    pub jwks: Option<AppTokenJwks>,
    /// `APP_TOKEN_JWKS_URL` (https, or http on loopback; checked by the configuration): the
    /// identity provider's published keys, fetched and kept fresh ([`remote`]). Never set
    /// together with `jwks`.
    pub jwks_url: Option<String>,
    /// `APP_TOKEN_ISSUER`: when set, every app token's `iss` must be this.
    pub issuer: Option<String>,
    /// `APP_TOKEN_AUDIENCE`: when set, every app token's `aud` must be, or contain, this.
    pub audience: Option<String>,
}

/// A key of the set with its validation, built once.
#[derive(Clone)]
struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// Where the key set comes from.
#[derive(Clone)]
enum KeySource {
    /// `APP_TOKEN_JWKS_FILE`: read once, by `kid`.
    File(Arc<HashMap<String, Verifier>>),
    /// `APP_TOKEN_JWKS_URL`: fetched and refreshed.
    Url(Arc<remote::RemoteKeySet>),
}

/// Signs app tokens (HS256 with `JWT_SECRET`) and verifies them (HS256 and the key set).
#[derive(Clone)]
pub struct AppTokenKeys {
    encoding: EncodingKey,
    secret: DecodingKey,
    secret_validation: Validation,
    /// `None` when no key set is configured.
    jwks: Option<KeySource>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for AppTokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppTokenKeys(<redacted>)")
    }
}

/// The checks every token passes, for one algorithm.
fn validation(algorithm: Algorithm, trust: &AppTokenTrust) -> Validation {
    let mut validation = Validation::new(algorithm);
    let mut required = vec!["exp", "sub"];
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    if let Some(issuer) = &trust.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    // Unset, a token that names any audience is refused (RFC 7519 §4.1.3: we are in none).
    if let Some(audience) = &trust.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn invalid(reason: impl Into<String>) -> AppTokenError {
    AppTokenError::Invalid(reason.into())
}

impl AppTokenKeys {
    /// HS256 keys from `JWT_SECRET` alone: no key set, no `iss`/`aud` requirement.
    pub fn new(secret: &Secret) -> Self {
        Self::with_trust(secret, &AppTokenTrust::default())
    }

    /// The keys of a configuration: `JWT_SECRET` and [`Config::app_tokens`]. A key set from
    /// `APP_TOKEN_JWKS_URL` starts empty: [`AppTokenKeys::start_refreshing`] fetches it.
    pub fn from_config(config: &Config) -> Self {
        Self::with_trust(&config.jwt_secret, &config.app_tokens)
    }

    /// [`AppTokenKeys::from_config`], counting key-set fetches in `fetches` (by outcome).
    pub fn from_config_counted(
        config: &Config,
        fetches: prometheus_client::metrics::family::Family<
            crate::observability::metrics::KindLabel,
            prometheus_client::metrics::counter::Counter,
        >,
    ) -> Self {
        Self::build(&config.jwt_secret, &config.app_tokens, fetches)
    }

    /// HS256 keys from `secret`, plus the key set and `iss`/`aud` of `trust`; every key's
    /// validation is built when its set is read.
    pub fn with_trust(secret: &Secret, trust: &AppTokenTrust) -> Self {
        Self::build(secret, trust, Default::default())
    }

    fn build(
        secret: &Secret,
        trust: &AppTokenTrust,
        fetches: prometheus_client::metrics::family::Family<
            crate::observability::metrics::KindLabel,
            prometheus_client::metrics::counter::Counter,
        >,
    ) -> Self {
        let jwks = match (&trust.jwks, &trust.jwks_url) {
            (Some(set), _) => Some(KeySource::File(Arc::new(verifiers(set, trust)))),
            (None, Some(url)) => Some(KeySource::Url(Arc::new(remote::RemoteKeySet::new(
                url.clone(),
                trust.clone(),
                fetches,
            )))),
            (None, None) => None,
        };
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            secret: DecodingKey::from_secret(secret.expose().as_bytes()),
            secret_validation: validation(Algorithm::HS256, trust),
            jwks,
            issuer: trust.issuer.clone(),
            audience: trust.audience.clone(),
        }
    }

    /// With `APP_TOKEN_JWKS_URL`: starts the task that fetches the key set now and keeps it
    /// fresh for as long as these keys live (it holds no strong reference). `None` otherwise.
    pub fn start_refreshing(&self) -> Option<tokio::task::JoinHandle<()>> {
        match &self.jwks {
            Some(KeySource::Url(source)) => Some(source.spawn_refresher()),
            _ => None,
        }
    }

    /// The fetched key source, when `APP_TOKEN_JWKS_URL` is configured (health, tests).
    pub fn remote_source(&self) -> Option<&remote::RemoteKeySet> {
        match &self.jwks {
            Some(KeySource::Url(source)) => Some(source),
            _ => None,
        }
    }

    /// Mints an HS256 token for `app_user_id` valid for `ttl_seconds`, optionally bound to a
    /// number; it carries the configured `iss` and `aud`, if any.
    pub fn mint(
        &self,
        app_user_id: &str,
        phone_number: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<String, AppTokenError> {
        let now = chrono::Utc::now().timestamp();
        // A bound token says what an identity provider's would: the number, proved now.
        let claims = AppClaims {
            sub: app_user_id.to_owned(),
            exp: now.saturating_add(ttl_seconds),
            iat: Some(now),
            nbf: None,
            phone_number: phone_number.map(str::to_owned),
            phone_number_verified: phone_number.map(|_| true),
            auth_time: phone_number.map(|_| now),
        };
        let minted = MintedClaims {
            claims: &claims,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &minted, &self.encoding)
            .map_err(|e| AppTokenError::Signing(e.to_string()))
    }

    /// Verifies key, algorithm, signature, expiry and the configured `iss`/`aud`, and returns
    /// the claims. With `APP_TOKEN_JWKS_URL`, a `kid` the held set lacks first triggers one
    /// throttled refresh ([`remote`]).
    pub async fn verify(&self, token: &str) -> Result<AppClaims, AppTokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(e.to_string()))?;
        let fetched;
        let keys: Option<&HashMap<String, Verifier>> = match &self.jwks {
            None => None,
            Some(KeySource::File(keys)) => Some(keys),
            Some(KeySource::Url(source)) => {
                let held = source.keys();
                let known = match (&held, header.kid.as_deref()) {
                    (Some(keys), Some(kid)) => keys.contains_key(kid),
                    // HS256 without a kid needs no set; anything else waits for one.
                    (_, None) => true,
                    (None, Some(_)) => false,
                };
                fetched = if known {
                    held
                } else {
                    source.refresh_for_unknown_kid().await
                };
                match fetched.as_deref() {
                    Some(keys) => Some(keys),
                    None if header.kid.is_none() => Some(&EMPTY),
                    None => return Err(invalid("no key set has been fetched yet")),
                }
            }
        };
        let (key, validation) = self.verifier_for(&header, keys)?;
        let claims = jsonwebtoken::decode::<AppClaims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AppTokenError::Expired,
                _ => invalid(e.to_string()),
            })?;
        // A token "issued" in the future was made on a wrong clock, or forged to outlive its
        // apparent lifetime; the library does not check `iat`.
        let latest = chrono::Utc::now()
            .timestamp()
            .saturating_add(LEEWAY_SECONDS as i64);
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(invalid("iat is in the future"));
        }
        Ok(claims)
    }

    /// The key and checks for a token, chosen from its header alone (`jwks`: the key set in
    /// force, if one is configured).
    fn verifier_for<'a>(
        &'a self,
        header: &Header,
        jwks: Option<&'a HashMap<String, Verifier>>,
    ) -> Result<(&'a DecodingKey, &'a Validation), AppTokenError> {
        let Some(jwks) = jwks else {
            // No key set: exactly the HS256 tokens of before (their validation refuses any
            // other alg; a `kid` means nothing here).
            return Ok((&self.secret, &self.secret_validation));
        };
        let Some(kid) = header.kid.as_deref() else {
            if header.alg == Algorithm::HS256 {
                return Ok((&self.secret, &self.secret_validation));
            }
            return Err(invalid(format!(
                "a {:?} token must name its key with `kid`",
                header.alg
            )));
        };
        // The kid itself is not repeated: it is the caller's text.
        let verifier = jwks
            .get(kid)
            .ok_or_else(|| invalid("the kid names no key of the app token key set"))?;
        if header.alg != verifier.algorithm {
            return Err(invalid(format!(
                "alg {:?} is not its key's ({:?})",
                header.alg, verifier.algorithm
            )));
        }
        // RFC 7515 §4.1.11: extensions marked critical must be understood; we know none.
        if header.crit.is_some() {
            return Err(invalid(
                "crit names header extensions this server does not implement",
            ));
        }
        Ok((&verifier.key, &verifier.validation))
    }
}

/// Each key of `set` ready to verify with, by `kid`, with the checks of `trust`.
fn verifiers(set: &AppTokenJwks, trust: &AppTokenTrust) -> HashMap<String, Verifier> {
    set.keys
        .iter()
        .map(|k| {
            let verifier = Verifier {
                algorithm: k.algorithm,
                key: k.key.clone(),
                validation: validation(k.algorithm, trust),
            };
            (k.kid.clone(), verifier)
        })
        .collect()
}

/// The key set of a source that has fetched none yet: HS256 tokens without `kid` still verify.
static EMPTY: std::sync::LazyLock<HashMap<String, Verifier>> =
    std::sync::LazyLock::new(HashMap::new);

#[cfg(test)]
mod tests {
    use super::*;

    /// The unit tests' key sets are files (or none): nothing to wait for.
    trait VerifyNow {
        fn verify_now(&self, token: &str) -> Result<AppClaims, AppTokenError>;
    }

    impl VerifyNow for AppTokenKeys {
        fn verify_now(&self, token: &str) -> Result<AppClaims, AppTokenError> {
            futures::executor::block_on(self.verify(token))
        }
    }

    fn keys(secret: &str) -> AppTokenKeys {
        AppTokenKeys::new(&Secret::new(secret))
    }

    #[test]
    fn round_trip_keeps_claims() {
        let k = keys(&"s".repeat(32));
        let token = k.mint("user_1", Some("+447911123456"), 60).unwrap();
        let claims = k.verify_now(&token).unwrap();
        assert_eq!(claims.sub, "user_1");
        assert_eq!(claims.phone_number.as_deref(), Some("+447911123456"));
        assert!(claims.exp > chrono::Utc::now().timestamp());
    }

    #[test]
    fn refuses_expired_foreign_and_unsigned_tokens() {
        let k = keys(&"s".repeat(32));
        let expired = k.mint("u", None, -120).unwrap();
        assert!(matches!(
            k.verify_now(&expired),
            Err(AppTokenError::Expired)
        ));
        let foreign = keys(&"t".repeat(32)).mint("u", None, 60).unwrap();
        assert!(matches!(
            k.verify_now(&foreign),
            Err(AppTokenError::Invalid(_))
        ));
        // alg "none" with the same claims.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
        assert!(matches!(k.verify_now(none), Err(AppTokenError::Invalid(_))));
        assert!(matches!(
            k.verify_now("garbage"),
            Err(AppTokenError::Invalid(_))
        ));
    }

    fn signed(secret: &str, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn nbf_iat_and_the_leeway_are_enforced() {
        let secret = "s".repeat(32);
        let k = keys(&secret);
        let now = chrono::Utc::now().timestamp();
        let leeway = LEEWAY_SECONDS as i64;
        let with = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "u", "exp": now + 600});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            k.verify_now(&signed(&secret, &c))
        };
        // nbf ten years ahead: refused; nbf now: accepted.
        assert!(matches!(
            with(serde_json::json!({"nbf": now + 315_360_000})),
            Err(AppTokenError::Invalid(_))
        ));
        assert!(with(serde_json::json!({"nbf": now})).is_ok());
        // iat in the future beyond the leeway: refused; within it: accepted.
        assert!(matches!(
            with(serde_json::json!({"iat": now + leeway + 60})),
            Err(AppTokenError::Invalid(_))
        ));
        assert!(with(serde_json::json!({"iat": now + 1})).is_ok());
        // exp just inside the leeway is accepted; well past it (the old 30 s) is expired.
        assert!(with(serde_json::json!({"exp": now - 1})).is_ok());
        assert!(matches!(
            with(serde_json::json!({"exp": now - leeway - 10})),
            Err(AppTokenError::Expired)
        ));
    }

    #[test]
    fn exp_and_sub_are_required() {
        let secret = "s".repeat(32);
        let k = keys(&secret);
        let no_exp = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u"}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            k.verify_now(&no_exp),
            Err(AppTokenError::Invalid(_))
        ));
        let no_sub = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": 4_102_444_800i64}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            k.verify_now(&no_sub),
            Err(AppTokenError::Invalid(_))
        ));
    }

    // Key sets. The keys are the test-only fixtures the integration tests use too.

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/app-token-keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn fixture_jwks() -> Value {
        serde_json::from_str(&fixture("jwks.json")).unwrap()
    }

    /// The fixture key set with its key `kid` changed by `edit` (`None` removes the key).
    fn edited(kid: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut set = fixture_jwks();
        let key = set["keys"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|k| k["kid"] == kid)
            .unwrap();
        edit(key.as_object_mut().unwrap());
        set.to_string()
    }

    const SECRET: &str = "test-secret-test-secret-test-secret-0123";

    fn trusting(issuer: Option<&str>, audience: Option<&str>) -> AppTokenKeys {
        AppTokenKeys::with_trust(
            &Secret::new(SECRET),
            &AppTokenTrust {
                jwks: Some(AppTokenJwks::parse(&fixture("jwks.json")).unwrap()),
                jwks_url: None,
                issuer: issuer.map(str::to_owned),
                audience: audience.map(str::to_owned),
            },
        )
    }

    fn claims(extra: Value) -> Value {
        let mut c = serde_json::json!({"sub": "u", "exp": chrono::Utc::now().timestamp() + 600});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    }

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_owned);
        h
    }

    fn private_key(alg: Algorithm) -> EncodingKey {
        match alg {
            Algorithm::EdDSA => {
                EncodingKey::from_ed_pem(fixture("test-only-ed25519-private.pem").as_bytes())
            }
            Algorithm::ES256 => {
                EncodingKey::from_ec_pem(fixture("test-only-p256-private.pem").as_bytes())
            }
            _ => EncodingKey::from_rsa_pem(fixture("test-only-rsa2048-private.pem").as_bytes()),
        }
        .unwrap()
    }

    const KEYS: [(Algorithm, &str); 3] = [
        (Algorithm::EdDSA, "test-ed25519"),
        (Algorithm::ES256, "test-p256"),
        (Algorithm::RS256, "test-rsa2048"),
    ];

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        jsonwebtoken::encode(&header(alg, kid), claims, &private_key(alg)).unwrap()
    }

    fn refused(k: &AppTokenKeys, token: &str) -> String {
        match k.verify_now(token) {
            Err(AppTokenError::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_fixture_key_set_loads_with_each_keys_one_algorithm() {
        let set = AppTokenJwks::parse(&fixture("jwks.json")).unwrap();
        let keys: Vec<_> = set.keys().collect();
        assert_eq!(keys, KEYS.map(|(alg, kid)| (kid, alg)));
        // The P-256 key has no `alg`: ES256 was derived from kty/crv.
        assert!(fixture_jwks()["keys"][1].get("alg").is_none());
        assert_eq!(
            format!("{set:?}"),
            r#"["test-ed25519 (EdDSA)", "test-p256 (ES256)", "test-rsa2048 (RS256)"]"#
        );
    }

    #[test]
    fn tokens_of_each_algorithm_verify_by_kid() {
        let k = trusting(None, None);
        for (alg, kid) in KEYS {
            let token = sign(
                alg,
                Some(kid),
                &claims(serde_json::json!({"phone_number": "+447911123456"})),
            );
            let verified = k
                .verify_now(&token)
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(verified.sub, "u");
            assert_eq!(verified.phone_number.as_deref(), Some("+447911123456"));
            // Expired ones are expired, as with HS256.
            let old = sign(
                alg,
                Some(kid),
                &claims(serde_json::json!({"exp": 1_000_000})),
            );
            assert!(matches!(k.verify_now(&old), Err(AppTokenError::Expired)));
        }
        // HS256 with JWT_SECRET and no kid still works beside the key set.
        assert!(k.verify_now(&k.mint("u", None, 60).unwrap()).is_ok());
    }

    #[test]
    fn the_header_decides_the_key_and_its_algorithm() {
        let k = trusting(None, None);
        let c = claims(serde_json::json!({}));
        // Unknown kid (any alg), and a key-set alg without a kid.
        assert!(refused(&k, &sign(Algorithm::EdDSA, Some("nobody"), &c)).contains("names no key"));
        assert!(refused(&k, &sign(Algorithm::EdDSA, None, &c)).contains("must name its key"));
        let hs_unknown_kid = jsonwebtoken::encode(
            &header(Algorithm::HS256, Some("nobody")),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(refused(&k, &hs_unknown_kid).contains("names no key"));
        // Another key's algorithm under a kid: RS256 signature with the P-256 key's kid.
        assert!(
            refused(&k, &sign(Algorithm::RS256, Some("test-p256"), &c)).contains("not its key's")
        );
        // A stranger Ed25519 key under a known kid: the signature fails.
        let stranger = jsonwebtoken::encode(
            &header(Algorithm::EdDSA, Some("test-ed25519")),
            &c,
            &EncodingKey::from_ed_pem(fixture("test-only-stranger-ed25519-private.pem").as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert!(refused(&k, &stranger).contains("InvalidSignature"));
        // HS256 under a key-set kid: signed with JWT_SECRET, with the public key's PEM, or with
        // its raw JWK bytes (the algorithm-confusion attack) - all refused before any HMAC.
        let jwk_bytes = |member: &str, index: usize| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(fixture_jwks()["keys"][index][member].as_str().unwrap())
                .unwrap()
        };
        for (kid, secret) in [
            ("test-ed25519", SECRET.as_bytes().to_vec()),
            (
                "test-ed25519",
                fixture("test-only-ed25519-public.pem").into_bytes(),
            ),
            ("test-ed25519", jwk_bytes("x", 0)),
            (
                "test-p256",
                fixture("test-only-p256-public.pem").into_bytes(),
            ),
            (
                "test-rsa2048",
                fixture("test-only-rsa2048-public.pem").into_bytes(),
            ),
            ("test-rsa2048", jwk_bytes("n", 2)),
        ] {
            let token = jsonwebtoken::encode(
                &header(Algorithm::HS256, Some(kid)),
                &c,
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(refused(&k, &token).contains("not its key's"), "{kid}");
            // Without the kid, HS256 means JWT_SECRET: the public bytes sign nothing.
            let unnamed = jsonwebtoken::encode(
                &header(Algorithm::HS256, None),
                &c,
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            if secret != SECRET.as_bytes() {
                assert!(refused(&k, &unnamed).contains("InvalidSignature"), "{kid}");
            }
        }
        // A critical header extension is not understood, so not accepted.
        let mut crit = header(Algorithm::EdDSA, Some("test-ed25519"));
        crit.crit = Some(vec!["exp".into()]);
        let crit = jsonwebtoken::encode(&crit, &c, &private_key(Algorithm::EdDSA)).unwrap();
        assert!(refused(&k, &crit).contains("crit"));
    }

    #[test]
    fn without_a_key_set_hs256_is_exactly_as_before() {
        let k = keys(SECRET);
        let c = claims(serde_json::json!({}));
        // A kid on an HS256 token was never looked at, and still is not.
        let with_kid = jsonwebtoken::encode(
            &header(Algorithm::HS256, Some("v1")),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(k.verify_now(&with_kid).is_ok());
        // A token of the key set's algorithms is nothing without the key set.
        assert!(
            refused(&k, &sign(Algorithm::EdDSA, Some("test-ed25519"), &c))
                .contains("InvalidAlgorithm")
        );
        // A token naming an audience is refused when none is configured, as before.
        let aud = signed(SECRET, &claims(serde_json::json!({"aud": "someone"})));
        assert!(refused(&k, &aud).contains("InvalidAudience"));
        // An issuer is not checked when none is configured.
        assert!(
            k.verify_now(&signed(SECRET, &claims(serde_json::json!({"iss": "x"}))))
                .is_ok()
        );
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let k = trusting(Some("https://tokens.example"), Some("truenumber"));
        let good = serde_json::json!({"iss": "https://tokens.example", "aud": "truenumber"});
        for (alg, kid) in KEYS {
            assert!(
                k.verify_now(&sign(alg, Some(kid), &claims(good.clone())))
                    .is_ok()
            );
            for bad in [
                serde_json::json!({"iss": "https://evil.example", "aud": "truenumber"}),
                serde_json::json!({"iss": "https://tokens.example", "aud": "other"}),
                serde_json::json!({"aud": "truenumber"}),
                serde_json::json!({"iss": "https://tokens.example"}),
            ] {
                refused(&k, &sign(alg, Some(kid), &claims(bad)));
            }
        }
        // An audience list that includes ours is accepted (RFC 7519 §4.1.3).
        let list =
            serde_json::json!({"iss": "https://tokens.example", "aud": ["other", "truenumber"]});
        assert!(
            k.verify_now(&sign(Algorithm::EdDSA, Some("test-ed25519"), &claims(list)))
                .is_ok()
        );
        // HS256 is held to the same; a minted token carries both and passes.
        refused(&k, &signed(SECRET, &claims(serde_json::json!({}))));
        assert!(k.verify_now(&signed(SECRET, &claims(good))).is_ok());
        let minted = k.mint("u", None, 60).unwrap();
        let raw: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(&minted)
            .map(|d| d.claims)
            .unwrap();
        assert_eq!(raw["iss"], "https://tokens.example");
        assert_eq!(raw["aud"], "truenumber");
        assert!(k.verify_now(&minted).is_ok());
        // Without them configured, minted tokens carry neither (unchanged).
        let plain = keys(SECRET).mint("u", None, 60).unwrap();
        let raw: Value = jsonwebtoken::dangerous::insecure_decode::<Value>(&plain)
            .map(|d| d.claims)
            .unwrap();
        assert!(raw.get("iss").is_none() && raw.get("aud").is_none());
    }

    #[test]
    fn bad_key_sets_are_refused_with_the_reason() {
        let parse = |json: &str| AppTokenJwks::parse(json).unwrap_err();
        assert!(matches!(parse("{not json"), JwksError::NotJson(_)));
        assert_eq!(parse(r#"[{"kty": "OKP"}]"#), JwksError::NotAKeySet);
        assert_eq!(parse(r#"{"keys": []}"#), JwksError::Empty);
        assert_eq!(
            parse(r#"{"keys": ["x"]}"#),
            JwksError::NotAnObject { index: 0 }
        );
        assert_eq!(
            parse(&edited("test-p256", |k| {
                k.remove("kid");
            })),
            JwksError::MissingKid { index: 1 }
        );
        assert_eq!(
            parse(&edited("test-p256", |k| {
                k.insert("kid".into(), "".into());
            })),
            JwksError::MissingKid { index: 1 }
        );
        assert_eq!(
            parse(&edited("test-p256", |k| {
                k.insert("kid".into(), "test-ed25519".into());
            })),
            JwksError::DuplicateKid("test-ed25519".into())
        );
        // Private material, whatever the key type.
        for (kid, member) in [
            ("test-p256", "d"),
            ("test-ed25519", "d"),
            ("test-rsa2048", "p"),
        ] {
            assert_eq!(
                parse(&edited(kid, |k| {
                    k.insert(member.into(), "AAAA".into());
                })),
                JwksError::PrivateMaterial {
                    kid: kid.into(),
                    member,
                },
            );
        }
        assert!(matches!(
            parse(r#"{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}"#),
            JwksError::PrivateMaterial { member: "k", .. }
        ));
        // Unsupported types and curves.
        for (kty, crv) in [
            ("oct", None),
            ("EC", Some("P-384")),
            ("OKP", Some("X25519")),
            ("OKP", Some("P-256")),
            ("EC", Some("Ed25519")),
        ] {
            let e = parse(&edited("test-p256", |k| {
                k.insert("kty".into(), kty.into());
                match crv {
                    Some(crv) => k.insert("crv".into(), crv.into()),
                    None => k.remove("crv"),
                };
            }));
            assert!(
                matches!(e, JwksError::UnsupportedType { .. }),
                "{kty} {crv:?}: {e}"
            );
        }
        // An alg that does not fit the key.
        for (kid, alg) in [
            ("test-p256", "RS256"),
            ("test-p256", "ES384"),
            ("test-rsa2048", "PS256"),
            ("test-ed25519", "HS256"),
            ("test-rsa2048", "none"),
        ] {
            assert_eq!(
                parse(&edited(kid, |k| {
                    k.insert("alg".into(), alg.into());
                })),
                JwksError::AlgMismatch {
                    kid: kid.into(),
                    alg: alg.into(),
                    expected: algorithm_name(
                        AppTokenJwks::parse(&fixture("jwks.json"))
                            .unwrap()
                            .keys()
                            .find(|(k, _)| *k == kid)
                            .unwrap()
                            .1
                    ),
                },
            );
        }
        // Keys for encryption.
        assert!(matches!(
            parse(&edited("test-rsa2048", |k| {
                k.insert("use".into(), "enc".into());
            })),
            JwksError::NotForSignatures { .. }
        ));
        assert!(matches!(
            parse(&edited("test-p256", |k| {
                k.insert("key_ops".into(), serde_json::json!(["encrypt"]));
            })),
            JwksError::NotForSignatures { .. }
        ));
        assert!(
            AppTokenJwks::parse(&edited("test-p256", |k| {
                k.insert("key_ops".into(), serde_json::json!(["verify"]));
            }))
            .is_ok()
        );
        // RSA sizes: 1024 bits is too small (a real modulus is not needed to tell).
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut n1024 = vec![0xC3u8; 128];
        n1024[127] |= 1;
        assert_eq!(
            parse(&edited("test-rsa2048", |k| {
                k.insert("n".into(), b64(&n1024).into());
            })),
            JwksError::RsaKeySize {
                kid: "test-rsa2048".into(),
                bits: 1024
            }
        );
        // A leading zero byte does not make a 2047-bit modulus 2048.
        let mut n2047 = vec![0u8; 257];
        n2047[1] = 0x7F;
        n2047[256] = 1;
        assert!(matches!(
            parse(&edited("test-rsa2048", |k| {
                k.insert("n".into(), b64(&n2047).into());
            })),
            JwksError::RsaKeySize { bits: 2047, .. }
        ));
        assert!(matches!(
            parse(&edited("test-rsa2048", |k| {
                k.insert("e".into(), "Ag".into());
            })),
            JwksError::Malformed { .. }
        ));
        // Missing and wrong-sized members.
        for (kid, member, value) in [
            ("test-p256", "y", None),
            ("test-p256", "x", Some(b64(&[1u8; 31]))),
            ("test-ed25519", "x", Some(b64(&[1u8; 33]))),
            ("test-ed25519", "x", Some("not base64!".to_owned())),
            ("test-rsa2048", "n", None),
        ] {
            let e = parse(&edited(kid, |k| {
                match value {
                    Some(v) => k.insert(member.into(), v.into()),
                    None => k.remove(member),
                };
            }));
            assert!(
                matches!(e, JwksError::Malformed { .. }),
                "{kid} {member}: {e}"
            );
        }
    }

    #[test]
    fn a_missing_or_huge_file_is_refused() {
        let missing = AppTokenJwks::from_file(Path::new("/nonexistent/jwks.json")).unwrap_err();
        assert!(matches!(missing, JwksError::Unreadable { .. }), "{missing}");
        assert!(missing.to_string().contains("/nonexistent/jwks.json"));
        let dir = std::env::temp_dir().join(format!("tn_jwks_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.json");
        std::fs::write(&big, " ".repeat(MAX_JWKS_FILE_BYTES as usize + 1)).unwrap();
        assert_eq!(
            AppTokenJwks::from_file(&big).unwrap_err(),
            JwksError::TooLarge
        );
        let good = dir.join("jwks.json");
        std::fs::write(&good, fixture("jwks.json")).unwrap();
        assert_eq!(AppTokenJwks::from_file(&good).unwrap().keys().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Verification cost per token by algorithm (prints, asserts nothing about time):
    /// `cargo test -p truenumber-core --lib verify_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn verify_cost_per_algorithm() {
        let k = trusting(None, None);
        let c = claims(serde_json::json!({}));
        let mut tokens = vec![("HS256", signed(SECRET, &c))];
        tokens.extend(KEYS.map(|(alg, kid)| (algorithm_name(alg), sign(alg, Some(kid), &c))));
        for (name, token) in tokens {
            let rounds = 2000;
            for _ in 0..50 {
                k.verify_now(&token).unwrap();
            }
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                k.verify_now(&token).unwrap();
            }
            let each = start.elapsed() / rounds;
            println!("{name:>6}: {:>8.1} µs per verify", each.as_secs_f64() * 1e6);
        }
    }
}
