//! Where data lives: the database connections ([`db`]), the API's dedicated request
//! connections ([`lanes`]), and the statements written for both engines ([`sql`]).

pub mod db;
pub mod lanes;
pub mod sql;
pub mod write_watch;
