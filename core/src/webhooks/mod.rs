//! Webhooks: the transactional outbox of events and their publisher and relay ([`events`]),
//! and the deliveries with their attempts ([`deliveries`]).

pub mod deliveries;
pub mod events;
