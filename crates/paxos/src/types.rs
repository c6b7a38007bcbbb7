//! The ids every part of the protocol shares, in one place: who (a
//! [`NodeId`]), which instance of Paxos in the log (a [`Slot`]) and which
//! record in one replica's durable stream (an [`Lsn`]). Plain numbers, so
//! that runtimes and formats can carry them as they are.

/// Identifies one replica (member) of the cluster. Never zero.
pub type NodeId = u64;

/// Index of one instance of Paxos in the replicated log; the first is 1.
pub type Slot = u64;

/// Log sequence number of a record; the first record is 1.
pub type Lsn = u64;
