//! Sans-IO Paxos.
pub mod ballot;
pub mod synod;
pub use ballot::{Ballot, NodeId};
