//! `api_keys`: several per company, stored only as argon2id hashes.

use sea_orm::entity::prelude::*;

/// One API key of a company.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub company_id: String,
    /// The public part of the key, used to find the hash without hashing.
    #[sea_orm(unique)]
    pub lookup_id: String,
    /// argon2id PHC string of the whole key.
    pub key_hash: String,
    /// The first 32 bits of SHA-256 of the whole key, hex: refuses a wrong secret before
    /// argon2 runs. `None` for keys made before it existed, until their next use.
    #[sea_orm(column_type = "Text", nullable)]
    pub secret_check: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last time the key was verified against its hash (cache misses only).
    pub last_used_at: Option<DateTimeUtc>,
    /// Set when revoked; a revoked key never authenticates again.
    pub revoked_at: Option<DateTimeUtc>,
    /// Live or test data.
    pub mode: KeyMode,
    /// May call the verification endpoints (initiate, status, list, summary, erase).
    pub scope_verifications: bool,
    /// May call the company's self-service endpoints (everything under `/company`).
    pub scope_management: bool,
    /// The company's own name for the key.
    pub label: Option<String>,
    /// After this instant the key is refused (set when it is rolled); `None`: no expiry.
    pub expires_at: Option<DateTimeUtc>,
}

/// Which data a key works on, as the `mode` column stores it (its CHECK admits exactly these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum KeyMode {
    /// Real verifications.
    #[sea_orm(string_value = "live")]
    Live,
    /// Test mode's sessions (keys `tn_test_…`).
    #[sea_orm(string_value = "test")]
    Test,
}

impl KeyMode {
    /// Whether this mode's data is live (a session's and an event's `livemode`).
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Live)
    }

    /// The stored text, which is also the key prefix's middle part (`tn_live_…`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

/// Relations are expressed in queries; none are declared.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
