//! Sans-IO Paxos.
pub mod ballot;
pub use ballot::{Ballot, NodeId};
