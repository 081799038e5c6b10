//! What the company learns about who completed a session (PRODUCT.md, "App identity and
//! number binding"): `number_binding` says whether the app token that completed it was bound
//! to the session's number (`app_token`) or, under the development switch
//! `APP_TOKEN_REQUIRE_PHONE_NUMBER=false`, not bound at all (`none`); `NULL` while the app has
//! not completed it (pending, expired, a test completion). `phone_verified_at` is the token's
//! `auth_time`: when the app's identity provider last proved the number.
//!
//! Both columns are nullable with no default, so adding them rewrites no row on either engine.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE verification_sessions
    ADD COLUMN number_binding VARCHAR(16) CHECK (number_binding IN ('app_token', 'none')),
    ADD COLUMN phone_verified_at TIMESTAMPTZ;
"#;
const DOWN: &str = r#"
ALTER TABLE verification_sessions
    DROP COLUMN phone_verified_at,
    DROP COLUMN number_binding;
"#;

const UP_SQLITE: &str = r#"
ALTER TABLE verification_sessions
    ADD COLUMN number_binding VARCHAR(16) CHECK (number_binding IN ('app_token', 'none'));
ALTER TABLE verification_sessions ADD COLUMN phone_verified_at TEXT;
"#;
const DOWN_SQLITE: &str = r#"
ALTER TABLE verification_sessions DROP COLUMN phone_verified_at;
ALTER TABLE verification_sessions DROP COLUMN number_binding;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_for_backend(manager, UP, UP_SQLITE).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::execute_for_backend(manager, DOWN, DOWN_SQLITE).await
    }
}
