//! Deterministic simulator for the Synod Paxos core and for the whole
//! stack, and their checkers.
//!
//! Whole clusters of the real protocol code run in one thread under a seeded
//! scheduler that drops, duplicates, delays and reorders messages, cuts links
//! (total, one-way and partial partitions, isolating the leader), crashes and
//! restarts replicas (losing whatever was not yet durable) and skews their
//! clocks. After every event the invariants hold or the run stops with the
//! seed that reproduces it.
//!
//! * [`world`]: the cluster, network, storage and clients;
//! * [`invariants`]: agreement, validity, durability, monotonicity;
//! * [`linearizability`]: the client-history checker;
//! * [`scenario`]: the OmniPaxos partial-connectivity scenarios;
//! * [`swarm`]: swarm testing, each seed its own mix of faults and knobs;
//! * [`stack`]: the whole stack (`--stack`): the runtime's driver, the
//!   write-ahead log and snapshot store over a faulty simulated disk, the
//!   etcd state machine, watch hub and lease keeper, with etcd-level
//!   checks (linearizable KV and txn, watch streams, lease expiry, locks).

pub mod invariants;
pub mod linearizability;
pub mod scenario;
pub mod stack;
pub mod swarm;
pub mod world;

pub use invariants::Violation;
pub use swarm::Swarm;
pub use world::{RunReport, SimOptions, World};
