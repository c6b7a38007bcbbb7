//! Deterministic simulator for the Synod Paxos core.
pub mod linearizability;
