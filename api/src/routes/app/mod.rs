//! The TrueNumber app's endpoints (app token): the sessions its user is asked about
//! ([`verifications`]: the consent view and the pending list) and the companies its user has
//! blocked ([`blocked_companies`]). All need a token bound to the user's number.

pub mod blocked_companies;
pub mod verifications;

pub use self::verifications::{AppApi, AppListStatus, AppVerification, AppVerificationList};
