//! The state machine behind the log, and a small key-value machine for tests.
//!
//! Every replica applies the same commands in the same order, so `apply`
//! must be deterministic: no clocks, no randomness, no I/O whose outcome can
//! differ between replicas.

use crate::command::{Command, Slot};
use bytes::Bytes;
use std::collections::BTreeMap;

/// A deterministic state machine replicated by the log.
pub trait StateMachine {
    /// What applying a command or answering a query returns to the client.
    type Output: Clone;

    /// Apply one chosen command. Called once per command, in log order, on
    /// every replica; duplicates are already filtered out.
    fn apply(&mut self, slot: Slot, command: &Command) -> Self::Output;

    /// Answer a read without changing the state.
    fn query(&self, query: &[u8]) -> Self::Output;
}

/// A key-value register machine used by tests and the simulator.
///
/// Commands: `P<key>=<value>` sets a key and returns the previous value.
/// Queries: the key; returns its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMachine {
    /// The current map.
    pub map: BTreeMap<Bytes, Bytes>,
    /// Number of commands applied.
    pub applied: u64,
}

impl KvMachine {
    /// Encode a put of `value` under `key`.
    pub fn put(key: &str, value: &str) -> Bytes {
        Bytes::from(format!("P{key}={value}"))
    }
}

impl StateMachine for KvMachine {
    type Output = Option<Bytes>;

    fn apply(&mut self, _slot: Slot, command: &Command) -> Option<Bytes> {
        self.applied += 1;
        let p = &command.payload;
        if p.first() != Some(&b'P') {
            return None;
        }
        let eq = p.iter().position(|&c| c == b'=')?;
        let key = p.slice(1..eq);
        let value = p.slice(eq + 1..);
        self.map.insert(key, value)
    }

    fn query(&self, query: &[u8]) -> Option<Bytes> {
        self.map.get(query).cloned()
    }
}
