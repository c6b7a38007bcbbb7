//! Revisions: the store's logical clock.
//!
//! Every write request that changes something gets one new *main* revision;
//! the changes inside it (the ops of a txn, the keys of a delete range) are
//! told apart by a *sub* revision counting from 0. Clients see only the main
//! revision; the sub revision orders watch events and the HashKV input.

/// A (main, sub) revision, ordered by main then sub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The store revision of the write request.
    pub main: i64,
    /// The index of the change within that request.
    pub sub: i64,
}

impl Revision {
    /// The first revision with main revision `main`.
    pub fn first_of(main: i64) -> Self {
        Revision { main, sub: 0 }
    }

    /// The last possible revision with main revision `main`.
    pub fn last_of(main: i64) -> Self {
        Revision { main, sub: i64::MAX }
    }

    /// etcd's on-disk key for this revision: 8 bytes main, `_`, 8 bytes sub
    /// (big-endian), and a trailing `t` for a tombstone. HashKV hashes these.
    pub fn to_etcd_bytes(self, tombstone: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(18);
        out.extend_from_slice(&self.main.to_be_bytes());
        out.push(b'_');
        out.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            out.push(b't');
        }
        out
    }
}
