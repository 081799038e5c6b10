//! A JSON request payload parsed by serde, strictly: a wrong type is an error (poem-openapi's
//! own `Json` would turn `5` into `"5"`), and every error names the field at fault.
//!
//! The schema in the OpenAPI document is still the `Object`'s, with its documented bounds;
//! [`Validate`] enforces those bounds with messages that name the field.

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::de::DeserializeOwned;
use truenumber_core::error_code::ErrorCode;

use crate::error::ApiError;

/// Field-level checks of a request body, with messages that name the field.
pub trait Validate {
    /// `Err` with an `INVALID_REQUEST` message naming the first bad field.
    fn validate(&self) -> Result<(), ApiError>;
}

/// Checks a string field's length in characters (`min..=max`).
pub fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        let bound = if min > 0 {
            format!("{min} to {max} characters")
        } else {
            format!("at most {max} characters")
        };
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("Invalid request: {field} must be {bound}, got {n}"),
        ));
    }
    Ok(())
}

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// For an optional field of a request body (`#[serde(default, deserialize_with =
/// "json_body::not_null")]`): absent is `None`, and `null` is refused like any other value of
/// the wrong type, as the document (which never says `nullable`) promises.
pub fn not_null<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(de).map(Some)
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        matches!(content_type.parse::<mime::Mime>(), Ok(m) if m.type_() == "application"
            && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

fn invalid(message: String) -> poem::Error {
    ApiError::new(ErrorCode::InvalidRequest, message).into()
}

/// Drops serde's " at line 1 column 17" where a field path already says where.
fn without_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

impl<T: Type + DeserializeOwned + Validate + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        // Every request body is an object: serde would also read a struct from an array
        // (`[null, null]`), which no schema of ours allows.
        if data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid(
                "Invalid request: the body must be a JSON object".into(),
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&data);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.to_string();
            if inner.is_syntax() || inner.is_eof() || path == "." {
                invalid(format!("Invalid request: {msg}"))
            } else {
                invalid(format!(
                    "Invalid request: {path}: {}",
                    without_position(&msg)
                ))
            }
        })?;
        de.end()
            .map_err(|e| invalid(format!("Invalid request: {e}")))?;
        value.validate()?;
        Ok(Self(value))
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: Type + DeserializeOwned + Validate + Send);
