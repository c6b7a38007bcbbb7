//! The replicated state and what follows it on each member:
//! * [`machine`]: the state machine every member applies the log to:
//!   etcd's MVCC store ([`synod_kv::KvState`]), the members' published
//!   attributes, the alarms and the auth store; the proposals and queries
//!   it answers;
//! * [`watch_hub`]: hands the events each applied write made to the watch
//!   streams, in revision order;
//! * [`lease_keeper`]: counts lease TTLs down on the leader and revokes
//!   expired leases through the log;
//! * [`typed`]: the reply each request gets, so a service receives a
//!   `PutResponse` for a `PutRequest` (used by the KV and Lease services).
//!
//! The machine must stay deterministic: the same log gives the same state
//! on every member. The hub and the keeper are member-local and never
//! change it except by proposing.

pub mod lease_keeper;
pub mod machine;
pub mod typed;
pub mod watch_hub;
