//! `GET /app/blocked-companies`, `PUT` and `DELETE /app/blocked-companies/{companyId}`: the
//! holder of a number blocks a company that keeps asking (PRODUCT.md, "Abuse controls"). The
//! block is the person's: it needs a token bound to the number, it is listed to them only, and
//! unblocking deletes it.

use poem_openapi::{Object, OpenApi, param::Path};
use truenumber_core::{
    abuse::blocks::{self, BlockError, BlockedCompany},
    error_code::ErrorCode,
};

use crate::{
    error::{ApiError, db_error},
    responses::{ErrorDoc, Failure, NoContent, OperationErrors, Success, SuccessBody},
    routes::{
        ApiTags,
        company::{SYSTEM_ERROR, UNAVAILABLE},
        verification::flow::token_binding,
    },
    security::AppAuth,
    state::AppState,
    timestamp::Timestamp,
};

/// A company the user has blocked.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct BlockedCompanyItem {
    /// The company.
    pub company_id: String,
    /// Its name.
    pub company_name: String,
    /// When the user blocked it (RFC 3339, UTC).
    pub blocked_at: Timestamp,
}

impl From<BlockedCompany> for BlockedCompanyItem {
    fn from(b: BlockedCompany) -> Self {
        Self {
            company_id: b.company_id,
            company_name: b.company_name,
            blocked_at: b.blocked_at.into(),
        }
    }
}

/// `GET /app/blocked-companies`.
#[derive(Debug, Object)]
pub struct BlockedCompanyList {
    /// Most recently blocked first.
    pub data: Vec<BlockedCompanyItem>,
}

impl SuccessBody for BlockedCompanyList {
    const DESCRIPTION: &'static str = "The companies the token's number has blocked.";
    const RATE_LIMITED: bool = false;
}

const UNAUTHORIZED: ErrorDoc = ErrorDoc::before_limiter(
    401,
    "`UNAUTHORIZED`: missing, invalid or expired app token.",
);
const BINDING_REQUIRED: ErrorDoc = ErrorDoc::before_limiter(
    403,
    "`NUMBER_BINDING_REQUIRED`: the token carries no verified `phone_number`.",
);

/// The error statuses of the list.
#[derive(Debug)]
pub struct ListErrors;

impl OperationErrors for ListErrors {
    const STATUSES: &'static [ErrorDoc] =
        &[UNAUTHORIZED, BINDING_REQUIRED, SYSTEM_ERROR, UNAVAILABLE];
}

/// The error statuses of block and unblock.
#[derive(Debug)]
pub struct BlockErrors;

impl OperationErrors for BlockErrors {
    const STATUSES: &'static [ErrorDoc] = &[
        ErrorDoc::before_limiter(400, "`INVALID_REQUEST`: `companyId` out of bounds."),
        UNAUTHORIZED,
        BINDING_REQUIRED,
        ErrorDoc::before_limiter(404, "`COMPANY_NOT_FOUND`: no such company (block only)."),
        SYSTEM_ERROR,
        UNAVAILABLE,
    ];
}

/// The app's blocked companies.
#[derive(Debug)]
pub struct BlockedCompaniesApi {
    /// Shared state.
    pub state: AppState,
}

impl BlockedCompaniesApi {
    /// The token's number: blocks are always the holder's own (development switch or not).
    fn number(
        &self,
        claims: &truenumber_core::companies::app_tokens::AppClaims,
    ) -> Result<String, ApiError> {
        let binding = token_binding(&self.state, claims)?;
        binding.number().map(str::to_owned).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NumberBindingRequired,
                "Blocks need an app token bound to a number (phone_number claim)",
            )
        })
    }
}

#[OpenApi(prefix_path = "/app/blocked-companies", tag = "ApiTags::App")]
impl BlockedCompaniesApi {
    /// List blocked companies (TrueNumber app)
    ///
    /// The companies the token's number has blocked: they may not start verifications of
    /// this number, and their requests are not in its pending list.
    #[oai(path = "/", method = "get", operation_id = "listBlockedCompanies")]
    async fn list(
        &self,
        AppAuth(claims): AppAuth,
    ) -> Result<Success<BlockedCompanyList>, Failure<ListErrors>> {
        let number = self.number(&claims)?;
        let data = blocks::list(&self.state.lanes, &number)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(Into::into)
            .collect();
        Ok(Success(BlockedCompanyList { data }))
    }

    /// Block a company (TrueNumber app)
    ///
    /// The company may no longer start verifications of the token's number
    /// (`BLOCKED_BY_USER`), and its pending requests leave the pending list. Blocking again
    /// changes nothing.
    #[oai(path = "/:companyId", method = "put", operation_id = "blockCompany")]
    async fn block(
        &self,
        AppAuth(claims): AppAuth,
        /// The company, as the consent view shows it (`companyId`).
        #[oai(name = "companyId", validator(min_length = 1, max_length = 255))]
        company_id: Path<String>,
    ) -> Result<NoContent, Failure<BlockErrors>> {
        let number = self.number(&claims)?;
        blocks::block(&self.state.lanes, &number, &company_id.0)
            .await
            .map_err(|e| match e {
                BlockError::CompanyNotFound => {
                    ApiError::new(ErrorCode::CompanyNotFound, "Company not found")
                }
                BlockError::Db(db) => db_error(db),
            })?;
        Ok(NoContent)
    }

    /// Unblock a company (TrueNumber app)
    ///
    /// The block is deleted; nothing of it is kept. Unblocking a company that is not blocked
    /// changes nothing.
    #[oai(
        path = "/:companyId",
        method = "delete",
        operation_id = "unblockCompany"
    )]
    async fn unblock(
        &self,
        AppAuth(claims): AppAuth,
        /// The company.
        #[oai(name = "companyId", validator(min_length = 1, max_length = 255))]
        company_id: Path<String>,
    ) -> Result<NoContent, Failure<BlockErrors>> {
        let number = self.number(&claims)?;
        blocks::unblock(&self.state.lanes, &number, &company_id.0)
            .await
            .map_err(db_error)?;
        Ok(NoContent)
    }
}
