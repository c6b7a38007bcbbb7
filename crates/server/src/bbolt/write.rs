//! Writing a fresh bbolt file in one go, as if by a single transaction:
//! both meta pages, an empty freelist, and for each top-level bucket a
//! B+tree of full leaf pages (a value larger than a page gets a page of its
//! own with overflow pages) under as many levels of branch pages as it
//! takes. Every page below the high-water mark is reachable exactly once,
//! which is what `bbolt check` (and `etcdctl snapshot status`) verifies.

use super::*;
use std::collections::BTreeMap;

/// The buckets of a database: name to (key to value).
pub type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// The transaction id written in the meta pages: that of bbolt's second
/// transaction (bbolt puts an even one in page 0 and an odd one in page 1).
const TXIDS: [u64; 2] = [2, 1];

/// A database file holding `buckets` (top-level buckets of plain values).
pub fn write(buckets: &Buckets) -> Vec<u8> {
    let mut file = File { bytes: vec![0; 3 * PAGE_SIZE], pages: 3 };
    // Page 2: the freelist, empty.
    file.header(2, FREELIST_PAGE, 0, 0);
    let mut roots = Vec::with_capacity(buckets.len());
    for (name, entries) in buckets {
        let elements = entries.iter().map(|(k, v)| (k.as_slice(), 0, v.as_slice()));
        roots.push((name.as_slice(), file.tree(elements.collect())));
    }
    let headers: Vec<[u8; BUCKET_HEADER]> = roots
        .iter()
        .map(|(_, root)| {
            let mut h = [0; BUCKET_HEADER];
            h[..8].copy_from_slice(&root.to_le_bytes());
            h
        })
        .collect();
    let root =
        file.tree(roots.iter().zip(&headers).map(|((name, _), h)| (*name, BUCKET_ELEMENT, h.as_slice())).collect());
    for (page, txid) in TXIDS.into_iter().enumerate() {
        file.meta(page as u64, root, txid);
    }
    file.bytes
}

/// The file being written: whole pages.
struct File {
    bytes: Vec<u8>,
    pages: u64,
}

impl File {
    /// Appends enough pages for `len` bytes; returns the first one's id.
    fn allocate(&mut self, len: usize) -> u64 {
        let id = self.pages;
        let count = len.div_ceil(PAGE_SIZE).max(1);
        self.pages += count as u64;
        self.bytes.resize(self.pages as usize * PAGE_SIZE, 0);
        id
    }

    fn at(id: u64) -> usize {
        id as usize * PAGE_SIZE
    }

    fn header(&mut self, id: u64, flags: u16, count: usize, overflow: usize) {
        let at = File::at(id);
        let count = u16::try_from(count).expect("a node holds at most a page of elements, far fewer than 65536");
        let overflow = u32::try_from(overflow).expect("a value is at most a few GiB, fewer than 2^32 pages");
        self.bytes[at..at + 8].copy_from_slice(&id.to_le_bytes());
        self.bytes[at + 8..at + 10].copy_from_slice(&flags.to_le_bytes());
        self.bytes[at + 10..at + 12].copy_from_slice(&count.to_le_bytes());
        self.bytes[at + 12..at + 16].copy_from_slice(&overflow.to_le_bytes());
    }

    fn meta(&mut self, id: u64, root: u64, txid: u64) {
        self.header(id, META_PAGE, 0, 0);
        let mut m = Vec::with_capacity(META_SUMMED + 8);
        m.extend_from_slice(&MAGIC.to_le_bytes());
        m.extend_from_slice(&VERSION.to_le_bytes());
        m.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        m.extend_from_slice(&0u32.to_le_bytes());
        m.extend_from_slice(&root.to_le_bytes());
        m.extend_from_slice(&0u64.to_le_bytes());
        m.extend_from_slice(&2u64.to_le_bytes());
        m.extend_from_slice(&self.pages.to_le_bytes());
        m.extend_from_slice(&txid.to_le_bytes());
        debug_assert_eq!(m.len(), META_SUMMED);
        let sum = fnv1a64(&m);
        m.extend_from_slice(&sum.to_le_bytes());
        let at = File::at(id) + PAGE_HEADER;
        self.bytes[at..at + m.len()].copy_from_slice(&m);
    }

    /// Writes a B+tree over `leaves` (key, flags, value; keys strictly
    /// increasing) and returns its root page.
    fn tree(&mut self, leaves: Vec<(&[u8], u32, &[u8])>) -> u64 {
        debug_assert!(leaves.windows(2).all(|w| w[0].0 < w[1].0), "bbolt keys are strictly increasing");
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        for node in nodes(&leaves, |(k, _, v)| k.len() + v.len()) {
            level.push((node[0].0.to_vec(), self.leaf(node)));
        }
        if level.is_empty() {
            return self.leaf(&[]);
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            for node in nodes(&level, |(k, _)| k.len()) {
                up.push((node[0].0.clone(), self.branch(node)));
            }
            level = up;
        }
        level[0].1
    }

    fn leaf(&mut self, elements: &[(&[u8], u32, &[u8])]) -> u64 {
        let size = node_size(elements.iter().map(|(k, _, v)| k.len() + v.len()));
        let id = self.allocate(size);
        self.header(id, LEAF_PAGE, elements.len(), size.div_ceil(PAGE_SIZE).max(1) - 1);
        let page = File::at(id);
        let mut data = page + PAGE_HEADER + elements.len() * ELEMENT;
        for (i, (key, flags, value)) in elements.iter().enumerate() {
            let e = page + PAGE_HEADER + i * ELEMENT;
            let fields = [*flags, (data - e) as u32, key.len() as u32, value.len() as u32];
            for (n, f) in fields.iter().enumerate() {
                self.bytes[e + 4 * n..e + 4 * n + 4].copy_from_slice(&f.to_le_bytes());
            }
            self.bytes[data..data + key.len()].copy_from_slice(key);
            data += key.len();
            self.bytes[data..data + value.len()].copy_from_slice(value);
            data += value.len();
        }
        id
    }

    fn branch(&mut self, children: &[(Vec<u8>, u64)]) -> u64 {
        let size = node_size(children.iter().map(|(k, _)| k.len()));
        let id = self.allocate(size);
        self.header(id, BRANCH_PAGE, children.len(), size.div_ceil(PAGE_SIZE).max(1) - 1);
        let page = File::at(id);
        let mut data = page + PAGE_HEADER + children.len() * ELEMENT;
        for (i, (key, child)) in children.iter().enumerate() {
            let e = page + PAGE_HEADER + i * ELEMENT;
            self.bytes[e..e + 4].copy_from_slice(&((data - e) as u32).to_le_bytes());
            self.bytes[e + 4..e + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
            self.bytes[e + 8..e + 16].copy_from_slice(&child.to_le_bytes());
            self.bytes[data..data + key.len()].copy_from_slice(key);
            data += key.len();
        }
        id
    }
}

/// Bytes of a node whose elements carry `payloads` bytes each.
fn node_size(payloads: impl Iterator<Item = usize>) -> usize {
    PAGE_HEADER + payloads.map(|p| ELEMENT + p).sum::<usize>()
}

/// Splits `items` into nodes that each fill at most a page, except a
/// node of one item too large for a page (it spills into overflow pages).
fn nodes<T>(items: &[T], payload: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, PAGE_HEADER);
    for (i, item) in items.iter().enumerate() {
        let add = ELEMENT + payload(item);
        if i > start && size + add > PAGE_SIZE {
            out.push(&items[start..i]);
            (start, size) = (i, PAGE_HEADER);
        }
        size += add;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}
