//! Where data lives: the database connections ([`db`]), the API's dedicated request
//! connections ([`lanes`]), the statements written for both engines ([`sql`]), and
//! standalone's backup and restore ([`backup`]).

pub mod backup;
pub mod db;
pub mod lanes;
pub mod sql;
pub mod write_watch;
