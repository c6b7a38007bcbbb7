//! What clients propose and what a log slot holds.
//!
//! A [`Command`] is one client request, named by `(client, seq)` so that a
//! retry after a timeout or a leader change is recognised and applied at most
//! once. A slot of the log holds a [`Value`]: a batch of commands (batching
//! many commands per slot is what makes the log fast) or a no-op that a new
//! leader uses to fill a hole.

use bytes::Bytes;
use std::sync::Arc;

pub use crate::types::Slot;

/// Names a client request uniquely: a client numbers its requests 1, 2, ...
/// and never reuses a number.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CommandId {
    /// The client's identity; each client must pick one no other client uses.
    pub client: u64,
    /// The client's sequence number for this request, starting at 1.
    pub seq: u64,
}

/// One client request for the replicated state machine.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Command {
    /// Who asked, for duplicate detection and for routing the reply.
    pub id: CommandId,
    /// A commit index the client knew of when it first made this command
    /// (retries keep it): every slot up to here was chosen before the
    /// command existed, so it is applied, if ever, above this slot. What
    /// lets a replica tell a retry whose client session expired from a new
    /// client (see [`crate::ClientError::SessionExpired`]); 0 is always
    /// safe, but once any session has expired a command with origin 0 from
    /// a client without a session is refused.
    pub origin: Slot,
    /// Opaque to the protocol; the state machine decodes it.
    pub payload: Bytes,
}

impl Command {
    /// A command with the given identity and payload, and origin 0 (see
    /// [`Command::with_origin`]).
    pub fn new(client: u64, seq: u64, payload: impl Into<Bytes>) -> Command {
        Command { id: CommandId { client, seq }, origin: 0, payload: payload.into() }
    }

    /// The same command made when its client knew that every slot up to
    /// `commit` was chosen (a replica's [`crate::Replica::commit_index`]
    /// when the command is first made; never a later one for a retry).
    pub fn with_origin(mut self, commit: Slot) -> Command {
        self.origin = commit;
        self
    }
}

/// What one slot of the log holds.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    /// Fills a slot that no proposal reached; applies nothing.
    Noop,
    /// A batch of client commands, applied in order. Shared, because the same
    /// batch travels to every acceptor and into the log.
    Commands(Arc<[Command]>),
    /// A new configuration of the cluster, not a state-machine command: once
    /// chosen in slot `i` it governs every slot from `i + α` on (see
    /// [`crate::reconfig`]). Applies nothing to the state machine.
    Reconfigure(crate::reconfig::Membership),
    /// Forget every client session (the duplicate-detection table's entry
    /// of a client) last used in a slot before `before`: proposed by a
    /// leader once `before` was the next slot at least
    /// [`crate::Config::session_expiry_ticks`] of its ticks ago. Every
    /// replica forgets the same sessions at the same slot, because the
    /// decision is in the log, never in a replica's clock. Applies nothing
    /// to the state machine.
    ExpireSessions {
        /// Sessions whose last command was applied below this slot go.
        before: Slot,
    },
}

impl Value {
    /// The commands in this value (none for a no-op).
    pub fn commands(&self) -> &[Command] {
        match self {
            Value::Noop | Value::Reconfigure(_) | Value::ExpireSessions { .. } => &[],
            Value::Commands(c) => c,
        }
    }
}
