//! sea-orm entities of TrueNumber's tables. No HTTP types here: DTOs live in the API crate.

pub mod api_key;
pub mod company;
pub mod verification_session;
