//! Authentication as poem-openapi security schemes: no operation that takes one of these can
//! run without it having passed.

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use truenumber_core::{
    companies::api_keys::{AuthenticatedCompany, Scope},
    companies::app_tokens::AppClaims,
    error_code::ErrorCode,
};

use crate::{error::ApiError, request_context, state::AppState};

fn state(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| ApiError::internal("AppState missing from the route").into())
}

/// A company's API key: `Authorization: Bearer tn_…`.
#[derive(SecurityScheme)]
#[oai(
    rename = "ApiKey",
    ty = "bearer",
    bearer_format = "tn_live_<keyId>_<secret>",
    checker = "check_api_key"
)]
pub struct CompanyAuth(pub AuthenticatedCompany);

async fn check_api_key(req: &Request, bearer: Bearer) -> poem::Result<AuthenticatedCompany> {
    let company = state(req)?
        .auth
        .authenticate(&bearer.token)
        .await
        .map_err(ApiError::from)?;
    request_context::record_company(&company.company_id);
    Ok(company)
}

/// Refuses a key that lacks `scope` (403 `INSUFFICIENT_SCOPE`); every operation behind an API
/// key calls this first, before its rate limit.
pub fn require_scope(company: &AuthenticatedCompany, scope: Scope) -> Result<(), ApiError> {
    if company.scopes.allows(scope) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InsufficientScope,
            format!("This API key lacks the `{}` scope", scope.as_str()),
        ))
    }
}

/// The TrueNumber app's token: `Authorization: Bearer <JWT>`, `exp` and `sub` required. HS256
/// with `JWT_SECRET`, or EdDSA / ES256 / RS256 with the key its `kid` names (that key's
/// algorithm only) of `APP_TOKEN_JWKS_FILE` or the identity provider's `APP_TOKEN_JWKS_URL`;
/// `iss` / `aud` must match `APP_TOKEN_ISSUER` / `APP_TOKEN_AUDIENCE` when they are set. Live
/// sessions also need the token's verified `phone_number` (checked by each operation).
#[derive(SecurityScheme)]
#[oai(
    rename = "AppToken",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_app_token"
)]
pub struct AppAuth(pub AppClaims);

/// Every refusal is the same 401 to the caller; which check failed is kept in the error's cause,
/// which the error middleware logs at debug level (without the token).
async fn check_app_token(req: &Request, bearer: Bearer) -> poem::Result<AppClaims> {
    state(req)?
        .app_tokens
        .verify(&bearer.token)
        .await
        .map_err(|e| {
            let mut err = ApiError::new(ErrorCode::Unauthorized, "Invalid or expired app token");
            err.cause = Some(e.to_string());
            err.into()
        })
}
