//! HashKV: a checksum of the store's history up to a revision, equal on
//! every replica that applied the same commands.
//!
//! It is computed the way etcd computes it (`unsafeHashByRev`): CRC-32C over
//! the bucket name `key`, then, in revision order, each retained change's
//! etcd revision key and its protobuf-encoded key-value. Changes at or below
//! the compacted revision count only while they are still the key's visible
//! value at the hashed revision, so the hash does not depend on when
//! compaction ran.

use prost::Message;

use crate::error::KvError;
use crate::pb::{header, HashKvResponse};
use crate::state::KvState;

impl KvState {
    /// Maintenance.HashKV at revision `rev` (0 or less: the current one).
    pub fn hash_kv(&self, rev: i64) -> Result<HashKvResponse, KvError> {
        let current = self.revision();
        let compacted = self.mvcc.compacted();
        if rev > 0 && rev < compacted {
            return Err(KvError::Compacted);
        }
        if rev > current {
            return Err(KvError::FutureRevision);
        }
        let rev = if rev <= 0 { current } else { rev };
        let changes: Vec<_> = self.mvcc.changes_upto(rev).collect();
        // etcd's quirk: with no live key at `rev`, its keep-set is empty and
        // every retained old change is hashed.
        let keep_empty = !changes.iter().any(|(_, e, visible)| *visible && e.live.is_some());
        let mut hash = crc32c::crc32c(b"key");
        for (key, entry, visible) in changes {
            let kept = keep_empty || (visible && entry.live.is_some());
            if entry.rev.main > compacted || kept {
                hash = crc32c::crc32c_append(hash, &entry.rev.to_etcd_bytes(entry.live.is_none()));
                hash = crc32c::crc32c_append(hash, &entry.to_kv(key, true).encode_to_vec());
            }
        }
        Ok(HashKvResponse { header: header(current), hash, compact_revision: compacted, hash_revision: rev })
    }
}
