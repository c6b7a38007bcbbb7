//! The state machine behind the log, and a small key-value machine for tests.
//!
//! Every replica applies the same commands in the same order, so `apply`
//! must be deterministic: no clocks, no randomness, no I/O whose outcome can
//! differ between replicas.

use crate::command::Command;
use crate::types::Slot;
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

    /// The whole state as bytes, for a snapshot. Equal states must give
    /// equal bytes.
    fn snapshot(&self) -> Vec<u8>;

    /// Replace the state by the one `snapshot` encodes.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError>;
}

/// A snapshot that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("snapshot does not decode: {0}")]
pub struct SnapshotError(pub String);

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

    fn snapshot(&self) -> Vec<u8> {
        // applied, then (key length, key, value length, value) per entry.
        let mut out = self.applied.to_be_bytes().to_vec();
        for (k, v) in &self.map {
            for part in [k, v] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let bad = || SnapshotError("truncated key-value snapshot".into());
        let (applied, mut rest) = snapshot.split_first_chunk::<8>().ok_or_else(bad)?;
        let mut map = BTreeMap::new();
        let take = |rest: &mut &[u8]| -> Result<Bytes, SnapshotError> {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len {
                return Err(bad());
            }
            let (part, tail) = tail.split_at(len);
            *rest = tail;
            Ok(Bytes::copy_from_slice(part))
        };
        while !rest.is_empty() {
            let k = take(&mut rest)?;
            let v = take(&mut rest)?;
            map.insert(k, v);
        }
        self.applied = u64::from_be_bytes(*applied);
        self.map = map;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    #[test]
    fn kv_snapshot_round_trips_and_rejects_truncation() {
        let mut a = KvMachine::default();
        a.apply(1, &Command::new(1, 1, KvMachine::put("x", "1")));
        a.apply(2, &Command::new(1, 2, KvMachine::put("y", "22")));
        let snap = a.snapshot();
        let mut b = KvMachine::default();
        b.restore(&snap).unwrap();
        assert_eq!(a, b);
        assert!(KvMachine::default().restore(&snap[..snap.len() - 1]).is_err());
    }
}
