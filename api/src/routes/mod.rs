//! HTTP routes: the versioned API (documented in OpenAPI) and the operational probes.

pub mod app;
pub mod company;
pub mod health;
pub mod test_mode;
pub mod verification;

use poem_openapi::Tags;

/// Tags of the OpenAPI document.
#[derive(Tags)]
pub enum ApiTags {
    /// Start, confirm and read mobile-number verifications.
    Verification,
    /// Your company's own settings and API keys (scope `management`).
    Company,
    /// What the TrueNumber app shows its user (app token).
    App,
    /// Test mode: complete test sessions without the app (test keys only).
    TestMode,
}
