//! Reading a bbolt file that came from outside: every offset, length and
//! page id is checked before it is used, each page may be reached once
//! (so a cycle or a shared page is refused, not followed), trees and nested
//! buckets are depth-limited, and nothing panics. The entries returned
//! borrow from the file's bytes.

use super::*;

/// The deepest a bucket's B+tree may be: a tree of 4 KiB pages that deep
/// would hold more than any file could.
const MAX_TREE_DEPTH: usize = 64;
/// The deepest buckets may nest (etcd nests none).
const MAX_NESTING: usize = 16;

/// Why a file could not be read as a bbolt database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    /// Neither meta page is valid: not a bbolt file, or both damaged.
    #[error("not a bbolt database: {0}")]
    NotBolt(String),
    /// A valid meta page, but a page or an element is out of place.
    #[error("damaged bbolt database: {0}")]
    Corrupt(String),
}

fn corrupt(msg: impl Into<String>) -> BoltError {
    BoltError::Corrupt(msg.into())
}

/// The fields of a meta page that reading needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    page_size: usize,
    root: u64,
    high_water: u64,
    txid: u64,
}

/// An open database file (its bytes in memory).
#[derive(Debug)]
pub struct Db<'a> {
    data: &'a [u8],
    meta: Meta,
}

/// A bucket's entries, in key order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Bucket<'a> {
    /// Every key with its value or nested bucket.
    pub entries: Vec<(&'a [u8], Item<'a>)>,
}

/// What a key in a bucket holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A value.
    Value(&'a [u8]),
    /// A nested bucket.
    Bucket(Bucket<'a>),
}

impl<'a> Bucket<'a> {
    /// The nested bucket named `name`.
    pub fn bucket(&self, name: &[u8]) -> Option<&Bucket<'a>> {
        match self.find(name)? {
            Item::Bucket(b) => Some(b),
            Item::Value(_) => None,
        }
    }

    /// The value of `key` (not a nested bucket).
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        match self.find(key)? {
            Item::Value(v) => Some(v),
            Item::Bucket(_) => None,
        }
    }

    /// The keys holding values (not nested buckets), with their values.
    pub fn values(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.entries.iter().filter_map(|(k, item)| match item {
            Item::Value(v) => Some((*k, *v)),
            Item::Bucket(_) => None,
        })
    }

    fn find(&self, key: &[u8]) -> Option<&Item<'a>> {
        // Keys are strictly increasing: checked when the bucket was read.
        let i = self.entries.binary_search_by(|(k, _)| (*k).cmp(key)).ok()?;
        Some(&self.entries[i].1)
    }
}

/// `len` bytes of `bytes` from `at`, or an error naming `what`.
fn slice<'a>(bytes: &'a [u8], at: usize, len: usize, what: &str) -> Result<&'a [u8], BoltError> {
    at.checked_add(len)
        .and_then(|end| bytes.get(at..end))
        .ok_or_else(|| corrupt(format!("{what} runs past its page ({len} bytes at offset {at})")))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The meta page starting at `at`, if it is a valid one.
fn meta_at(data: &[u8], at: usize) -> Option<Meta> {
    let m = data.get(at.checked_add(PAGE_HEADER)?..)?;
    let summed = m.get(..META_SUMMED)?;
    if u32_at(m, 0)? != MAGIC || u32_at(m, 4)? != VERSION || u64_at(m, META_SUMMED)? != fnv1a64(summed) {
        return None;
    }
    Some(Meta {
        page_size: usize::try_from(u32_at(m, 8)?).ok()?,
        root: u64_at(m, 16)?,
        high_water: u64_at(m, 40)?,
        txid: u64_at(m, 48)?,
    })
}

/// A page size bbolt can have written: a power of two from 1 KiB to
/// 16 MiB (bbolt looks for the second meta page within that range).
fn plausible_page_size(n: usize) -> bool {
    n.is_power_of_two() && (1024..=1 << 24).contains(&n)
}

/// Whether `data` starts like a bbolt file: the magic number in the first
/// meta page, or in the second where one of the page sizes bbolt uses puts
/// it (the first may be damaged). Says nothing about the rest.
pub fn looks_like_bbolt(data: &[u8]) -> bool {
    std::iter::once(0).chain((10..=24).map(|s| 1usize << s)).any(|at| u32_at(data, at + PAGE_HEADER) == Some(MAGIC))
}

impl<'a> Db<'a> {
    /// Opens a database from its bytes: finds the valid meta page with the
    /// higher transaction id (as bbolt does) and checks that the pages it
    /// says are in use are all in the file.
    pub fn open(data: &'a [u8]) -> Result<Db<'a>, BoltError> {
        // The page size is in the first meta page; if that one is damaged,
        // look for the second where each possible page size puts it.
        let page_size = meta_at(data, 0)
            .map(|m| m.page_size)
            .or_else(|| (10..=24).map(|s| 1usize << s).find(|&at| meta_at(data, at).is_some_and(|m| m.page_size == at)))
            .ok_or_else(|| BoltError::NotBolt("no valid meta page (magic 0xED0CDAED, version 2, checksum)".into()))?;
        if !plausible_page_size(page_size) {
            return Err(BoltError::NotBolt(format!("page size {page_size} is not one bbolt writes")));
        }
        let metas = [meta_at(data, 0), meta_at(data, page_size)];
        let meta = metas
            .into_iter()
            .flatten()
            .filter(|m| m.page_size == page_size)
            .max_by_key(|m| m.txid)
            .ok_or_else(|| BoltError::NotBolt("no valid meta page".into()))?;
        let pages = data.len() / page_size;
        if meta.high_water > pages as u64 {
            return Err(corrupt(format!(
                "truncated: {} pages of {page_size} bytes are in use but the file holds {} bytes",
                meta.high_water,
                data.len()
            )));
        }
        if meta.root < 2 || meta.root >= meta.high_water {
            return Err(corrupt(format!("root page {} outside pages 2..{}", meta.root, meta.high_water)));
        }
        Ok(Db { data, meta })
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.meta.page_size
    }

    /// The database's size in bytes: the pages in use (bbolt's `Tx.Size`,
    /// what `etcdctl snapshot status` reports).
    pub fn size(&self) -> u64 {
        self.meta.high_water.saturating_mul(self.meta.page_size as u64)
    }

    /// Reads every bucket and value, checking the whole structure.
    pub fn read(&self) -> Result<Bucket<'a>, BoltError> {
        let mut walk = Walk { db: self, reached: vec![false; self.meta.high_water as usize] };
        walk.bucket(Source::Paged(self.meta.root), 0)
    }
}

/// Where a bucket's tree starts.
enum Source<'a> {
    Paged(u64),
    /// An inline bucket's only page (a leaf), inside its parent's value.
    Inline(&'a [u8]),
}

/// A leaf element as found: key, flags, value.
type Element<'a> = (&'a [u8], u32, &'a [u8]);

/// One read of the whole file: which pages have been reached.
struct Walk<'d, 'a> {
    db: &'d Db<'a>,
    reached: Vec<bool>,
}

impl<'a> Walk<'_, 'a> {
    fn bucket(&mut self, source: Source<'a>, nesting: usize) -> Result<Bucket<'a>, BoltError> {
        if nesting > MAX_NESTING {
            return Err(corrupt(format!("buckets nested more than {MAX_NESTING} deep")));
        }
        let mut elements = Vec::new();
        match source {
            Source::Paged(id) => self.page(id, 0, &mut elements)?,
            Source::Inline(page) => {
                let flags = u16_at(page, 8).ok_or_else(|| corrupt("inline bucket shorter than a page header"))?;
                if flags != LEAF_PAGE {
                    return Err(corrupt(format!("inline bucket page has type {flags:#x}, not a leaf")));
                }
                leaf_elements(page, "inline bucket", &mut elements)?;
            }
        }
        if let Some(w) = elements.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(corrupt(format!("keys out of order in a bucket: {:?} before {:?}", w[0].0, w[1].0)));
        }
        let mut entries = Vec::with_capacity(elements.len());
        for (key, flags, value) in elements {
            let item = if flags & BUCKET_ELEMENT == 0 {
                Item::Value(value)
            } else {
                let root = u64_at(value, 0).filter(|_| value.len() >= BUCKET_HEADER).ok_or_else(|| {
                    corrupt(format!("bucket {:?} has a {}-byte header", String::from_utf8_lossy(key), value.len()))
                })?;
                let source = if root == 0 { Source::Inline(&value[BUCKET_HEADER..]) } else { Source::Paged(root) };
                Item::Bucket(self.bucket(source, nesting + 1)?)
            };
            entries.push((key, item));
        }
        Ok(Bucket { entries })
    }

    /// Collects the leaf elements under page `id`, in tree order.
    fn page(&mut self, id: u64, depth: usize, out: &mut Vec<Element<'a>>) -> Result<(), BoltError> {
        if depth > MAX_TREE_DEPTH {
            return Err(corrupt(format!("a bucket's tree is more than {MAX_TREE_DEPTH} pages deep")));
        }
        let high_water = self.db.meta.high_water;
        if id < 2 || id >= high_water {
            return Err(corrupt(format!("page id {id} outside pages 2..{high_water}")));
        }
        let ps = self.db.meta.page_size;
        // In range: id < high_water <= file pages, so the header is there.
        let start = id as usize * ps;
        let overflow = u32_at(self.db.data, start + 12).ok_or_else(|| corrupt(format!("page {id} past the end")))?;
        let last = id.checked_add(u64::from(overflow)).filter(|&l| l < high_water).ok_or_else(|| {
            corrupt(format!("page {id} spans {overflow} overflow pages, past the high-water mark {high_water}"))
        })?;
        for p in id..=last {
            let seen = &mut self.reached[p as usize];
            if *seen {
                return Err(corrupt(format!("page {p} is reached twice (a cycle or a shared page)")));
            }
            *seen = true;
        }
        let page = &self.db.data[start..(last as usize + 1) * ps];
        let (own_id, flags) = (u64_at(page, 0).unwrap_or(u64::MAX), u16_at(page, 8).unwrap_or(0));
        if own_id != id {
            return Err(corrupt(format!("page {id} says it is page {own_id}")));
        }
        match flags {
            LEAF_PAGE => leaf_elements(page, &format!("leaf page {id}"), out),
            BRANCH_PAGE => {
                let count = element_count(page, &format!("branch page {id}"))?;
                if count == 0 {
                    return Err(corrupt(format!("branch page {id} has no children")));
                }
                let mut previous: Option<&[u8]> = None;
                for i in 0..count {
                    let at = PAGE_HEADER + i * ELEMENT;
                    let (pos, ksize) = (u32_at(page, at).unwrap_or(0), u32_at(page, at + 4).unwrap_or(0));
                    let child = u64_at(page, at + 8).unwrap_or(0);
                    let key = slice(page, at + pos as usize, ksize as usize, &format!("key {i} of branch page {id}"))?;
                    if previous.is_some_and(|p| p >= key) {
                        return Err(corrupt(format!("keys out of order in branch page {id}")));
                    }
                    previous = Some(key);
                    self.page(child, depth + 1, out)?;
                }
                Ok(())
            }
            other => Err(corrupt(format!("page {id} has type {other:#x} where a branch or leaf belongs"))),
        }
    }
}

/// A page's element count, checked to fit in the page.
fn element_count(page: &[u8], what: &str) -> Result<usize, BoltError> {
    let count = usize::from(u16_at(page, 10).unwrap_or(0));
    if PAGE_HEADER + count * ELEMENT > page.len() {
        return Err(corrupt(format!("{what}: {count} elements do not fit in {} bytes", page.len())));
    }
    Ok(count)
}

/// Collects a leaf page's elements.
fn leaf_elements<'a>(page: &'a [u8], what: &str, out: &mut Vec<Element<'a>>) -> Result<(), BoltError> {
    let count = element_count(page, what)?;
    for i in 0..count {
        let at = PAGE_HEADER + i * ELEMENT;
        let field = |n: usize| u32_at(page, at + 4 * n).unwrap_or(0);
        let (flags, pos, ksize, vsize) = (field(0), field(1) as usize, field(2) as usize, field(3) as usize);
        if flags & !BUCKET_ELEMENT != 0 {
            return Err(corrupt(format!("{what}: element {i} has unknown flags {flags:#x}")));
        }
        let key = slice(page, at + pos, ksize, &format!("{what}: key {i}"))?;
        let value = slice(page, at + pos + ksize, vsize, &format!("{what}: value {i}"))?;
        out.push((key, flags, value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn sample() -> Vec<u8> {
        let mut buckets = BTreeMap::new();
        for b in 0..3u8 {
            let entries = (0..400u32).map(|i| (i.to_be_bytes().to_vec(), vec![b; (i % 40) as usize])).collect();
            buckets.insert(vec![b'b', b], entries);
        }
        super::super::write::write(&buckets)
    }

    fn read(file: &[u8]) -> Result<usize, BoltError> {
        let root = Db::open(file)?.read()?;
        Ok(root.entries.len())
    }

    #[test]
    fn truncated_or_foreign_files_are_refused() {
        let file = sample();
        assert_eq!(read(&file), Ok(3));
        assert!(matches!(read(b"hello"), Err(BoltError::NotBolt(_))));
        assert!(matches!(read(&file[..file.len() - PAGE_SIZE]), Err(BoltError::Corrupt(e)) if e.contains("truncated")));
        assert!(matches!(read(&[0; 8192]), Err(BoltError::NotBolt(_))));
    }

    #[test]
    fn a_damaged_first_meta_page_falls_back_to_the_second() {
        let mut file = sample();
        file[20] ^= 0xff;
        assert_eq!(read(&file), Ok(3));
        file[PAGE_SIZE + 20] ^= 0xff;
        assert!(matches!(read(&file), Err(BoltError::NotBolt(_))));
    }

    #[test]
    fn a_page_reached_twice_is_refused_not_followed() {
        let mut file = sample();
        // Point every branch element of every branch page at page 3: a
        // shared page, and, for a branch at page 3, a cycle.
        for id in 2..file.len() / PAGE_SIZE {
            let at = id * PAGE_SIZE;
            if u16_at(&file, at + 8) == Some(BRANCH_PAGE) {
                let count = usize::from(u16_at(&file, at + 10).unwrap());
                for i in 0..count {
                    let e = at + PAGE_HEADER + i * ELEMENT + 8;
                    file[e..e + 8].copy_from_slice(&3u64.to_le_bytes());
                }
            }
        }
        let err = read(&file).unwrap_err().to_string();
        assert!(err.contains("reached twice"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any damage to a valid file is refused or read; it never panics,
        /// loops or allocates without bound.
        #[test]
        fn damaged_files_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut file = sample();
            for (at, byte) in flips {
                let i = at.index(file.len());
                file[i] = byte;
            }
            if truncate {
                file.truncate(cut.index(file.len()));
            }
            let _ = read(&file);
        }

        /// Damage aimed at the structure: page headers and elements.
        #[test]
        fn damaged_headers_never_panic(
            page in 2usize..12,
            field in 0usize..64,
            value in any::<u32>(),
        ) {
            let mut file = sample();
            let at = page * PAGE_SIZE + field;
            if at + 4 <= file.len() {
                file[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            let _ = read(&file);
        }
    }
}
