//! bbolt's file format: the B+tree database file etcd keeps its backend in
//! (`member/snap/db`) and streams as a backup (`etcdctl snapshot save`).
//! [`mod@read`] walks such a file, [`mod@write`] makes one, so Synod can restore a
//! snapshot saved from etcd and etcd's tools can read and restore a snapshot
//! saved from Synod ([`crate::etcd_db`] says what the buckets hold).
//!
//! Written here rather than taken from crates.io: the Rust ports of bbolt
//! found there (`bbolt-rs`, `nut`, `bolt-lite`) are whole database engines
//! or young one-purpose readers that map the file and trust its offsets,
//! while a backup handed to `synod snapshot restore` is input from outside
//! and must never crash the reader. Only the file format is shared with
//! bbolt; no code is.
//!
//! # The format (version 2, as bbolt 1.3 and 1.4 write it)
//!
//! Integers are little-endian (bbolt writes the machine's order, and every
//! machine etcd runs on in practice is little-endian). The file is a
//! sequence of pages of one size (the meta page says which, usually
//! 4096 bytes); page `n` starts at byte `n * page_size`. Each page starts
//! with a 16-byte header:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | page id (its own number) |
//! | 2 | type: 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist |
//! | 2 | number of elements |
//! | 4 | overflow: how many more pages this one spans |
//!
//! Pages 0 and 1 are meta pages; after the header: magic `0xED0CDAED`
//! (4 bytes), version 2 (4), page size (4), flags (4), the root bucket
//! (root page id 8, sequence 8), the freelist's page id (8,
//! `u64::MAX` when the freelist is not stored, as etcd runs bbolt), the
//! high-water mark: number of pages in use (8), the transaction id (8),
//! and an FNV-1a 64-bit hash of those 56 bytes (8). A reader takes the
//! valid meta page with the higher transaction id.
//!
//! A leaf page holds `count` 16-byte elements (flags 4, pos 4, key size 4,
//! value size 4) and then their keys and values; `pos` counts from the
//! element's own first byte. Flag 0x01 marks a nested bucket: the value is
//! the bucket's header (root page id 8, sequence 8), followed, when the
//! root page id is 0, by the bucket's only page inline. A branch page holds
//! elements of (pos 4, key size 4, child page id 8), each key the first of
//! its child. Keys are strictly increasing within a bucket. The freelist
//! page holds the page ids that are free.

pub mod read;
pub mod write;

/// bbolt's magic number.
const MAGIC: u32 = 0xED0C_DAED;
/// The only file format version bbolt has written.
const VERSION: u32 = 2;
/// Bytes of a page header.
const PAGE_HEADER: usize = 16;
/// Bytes of a branch or a leaf element.
const ELEMENT: usize = 16;
/// Bytes of a bucket header (root page id, sequence).
const BUCKET_HEADER: usize = 16;
/// Bytes of a meta page's contents that its checksum covers.
const META_SUMMED: usize = 56;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element's flag for a nested bucket.
const BUCKET_ELEMENT: u32 = 0x01;

/// The page size Synod writes: the usual one, and what etcd gets from
/// bbolt on the machines it runs on.
pub const PAGE_SIZE: usize = 4096;

/// FNV-1a, 64 bits: the meta page's checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn sample() -> BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> {
        let mut buckets = BTreeMap::new();
        let mut big = BTreeMap::new();
        for i in 0..3000u32 {
            big.insert(i.to_be_bytes().to_vec(), vec![b'v'; (i % 50) as usize]);
        }
        // Values larger than a page spill into overflow pages.
        big.insert(b"huge".to_vec(), vec![7; 3 * PAGE_SIZE + 5]);
        buckets.insert(b"big".to_vec(), big);
        buckets.insert(b"empty".to_vec(), BTreeMap::new());
        buckets.insert(b"small".to_vec(), BTreeMap::from([(b"k".to_vec(), b"v".to_vec())]));
        buckets
    }

    #[test]
    fn what_is_written_reads_back() {
        let buckets = sample();
        let file = write::write(&buckets);
        assert_eq!(file.len() % PAGE_SIZE, 0);
        let db = read::Db::open(&file).unwrap();
        assert_eq!(db.size(), file.len() as u64);
        let root = db.read().unwrap();
        let names: Vec<&[u8]> = root.entries.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, [b"big".as_slice(), b"empty", b"small"]);
        for (name, want) in &buckets {
            let got = root.bucket(name).unwrap();
            let got: BTreeMap<Vec<u8>, Vec<u8>> = got.values().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            assert_eq!(&got, want, "bucket {}", String::from_utf8_lossy(name));
        }
    }
}
