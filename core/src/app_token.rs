//! Mobile-app tokens: HS256 JWTs signed with `JWT_SECRET`.
//!
//! `exp` and `sub` (the app user id) are required; `phone_number`, when present, binds the
//! token to one number. Only HS256 is accepted, so an `alg: none` or RS/HS confusion token
//! never verifies. `nbf`, when present, is enforced, and a token whose `iat` lies in the future
//! is refused. Clock skew between the token service and the API is allowed for with a leeway
//! of [`LEEWAY_SECONDS`] on `exp`, `nbf` and `iat`, and no more.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Seconds of clock skew tolerated on `exp`, `nbf` and `iat` (documented in the README).
pub const LEEWAY_SECONDS: u64 = 5;

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
    /// When present, the only number this token may confirm (E.164).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

/// Why a token was refused (never shown in detail to the caller).
#[derive(Debug, thiserror::Error)]
pub enum AppTokenError {
    /// Past its `exp`.
    #[error("the app token has expired")]
    Expired,
    /// Bad signature, shape, algorithm or claims.
    #[error("the app token is invalid: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("could not sign the app token: {0}")]
    Signing(String),
}

/// Signs and verifies app tokens with one shared secret.
#[derive(Clone)]
pub struct AppTokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AppTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppTokenKeys(<redacted>)")
    }
}

impl AppTokenKeys {
    /// Keys from `JWT_SECRET`.
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// Mints a token for `app_user_id` valid for `ttl_seconds`, optionally bound to a number.
    pub fn mint(
        &self,
        app_user_id: &str,
        phone_number: Option<&str>,
        ttl_seconds: i64,
    ) -> Result<String, AppTokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = AppClaims {
            sub: app_user_id.to_owned(),
            exp: now.saturating_add(ttl_seconds),
            iat: Some(now),
            nbf: None,
            phone_number: phone_number.map(str::to_owned),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppTokenError::Signing(e.to_string()))
    }

    /// Verifies signature, algorithm and expiry, and returns the claims.
    pub fn verify(&self, token: &str) -> Result<AppClaims, AppTokenError> {
        let claims = jsonwebtoken::decode::<AppClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AppTokenError::Expired,
                _ => AppTokenError::Invalid(e.to_string()),
            })?;
        // A token "issued" in the future was made on a wrong clock, or forged to outlive its
        // apparent lifetime; the library does not check `iat`.
        let latest = chrono::Utc::now()
            .timestamp()
            .saturating_add(LEEWAY_SECONDS as i64);
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(AppTokenError::Invalid("iat is in the future".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> AppTokenKeys {
        AppTokenKeys::new(&Secret::new(secret))
    }

    #[test]
    fn round_trip_keeps_claims() {
        let k = keys(&"s".repeat(32));
        let token = k.mint("user_1", Some("+447911123456"), 60).unwrap();
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, "user_1");
        assert_eq!(claims.phone_number.as_deref(), Some("+447911123456"));
        assert!(claims.exp > chrono::Utc::now().timestamp());
    }

    #[test]
    fn refuses_expired_foreign_and_unsigned_tokens() {
        let k = keys(&"s".repeat(32));
        let expired = k.mint("u", None, -120).unwrap();
        assert!(matches!(k.verify(&expired), Err(AppTokenError::Expired)));
        let foreign = keys(&"t".repeat(32)).mint("u", None, 60).unwrap();
        assert!(matches!(k.verify(&foreign), Err(AppTokenError::Invalid(_))));
        // alg "none" with the same claims.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwfQ.";
        assert!(matches!(k.verify(none), Err(AppTokenError::Invalid(_))));
        assert!(matches!(
            k.verify("garbage"),
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
            k.verify(&signed(&secret, &c))
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
        assert!(matches!(k.verify(&no_exp), Err(AppTokenError::Invalid(_))));
        let no_sub = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": 4_102_444_800i64}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert!(matches!(k.verify(&no_sub), Err(AppTokenError::Invalid(_))));
    }
}
