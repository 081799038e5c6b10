//! A short check value of each API key's secret, beside its argon2id hash, so that a known key
//! id with a wrong secret is refused without hashing (core/src/auth.rs explains the choice).
//! Keys made before this migration have none; theirs is written at their next successful use.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE api_keys ADD COLUMN secret_check TEXT";
const DOWN: &str = "ALTER TABLE api_keys DROP COLUMN secret_check";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
