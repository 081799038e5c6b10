//! HTTP routes: the versioned API (documented in OpenAPI) and the operational probes.

pub mod health;
pub mod verification;

use poem_openapi::Tags;

/// Tags of the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// Start, confirm and read mobile-number verifications.
    Verification,
}
