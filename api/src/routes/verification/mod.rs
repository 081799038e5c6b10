//! The verification API (scope `verifications` for companies, app tokens for the app): the
//! flow of one session ([`flow`]: initiate, submit, deny, status) and a company's records of
//! its sessions ([`records`]: list, summary, erase).

pub mod flow;
pub mod records;
