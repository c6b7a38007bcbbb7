//! The on-disk record format of the write-ahead log.
//!
//! A record is a 17-byte header followed by the payload:
//!
//! ```text
//! offset  size  field
//!      0     1  kind    (KIND_DATA; never 0, so a zero byte marks end of log)
//!      1     4  len     payload length, little-endian u32
//!      5     8  lsn     log sequence number, little-endian u64
//!     13     4  crc     crc32c over kind, len, lsn and payload, little-endian
//!     17   len  payload
//! ```
//!
//! The kind byte comes first and is never zero so that any prefix of a
//! record is distinguishable from zero-filled preallocated space: a zero
//! where a record should start means "end of log" (if everything after it
//! is zero too), while a cut-off record is reported as a torn tail.
//! The checksum covers the header fields too, so a flipped length or LSN is
//! caught like a flipped payload bit. Decoding never panics on any input.

/// Size of the record header in bytes.
pub const HEADER_LEN: usize = 17;

/// Kind byte of a data record. Arbitrary but non-zero and not all-ones, so
/// neither zero-filled nor erased (0xFF) space looks like a record start.
pub const KIND_DATA: u8 = 0xD1;

/// Largest payload a record may carry (64 MiB). Lengths beyond this in a
/// header are treated as corruption rather than allocation requests.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Bytes a record with a payload of `payload_len` bytes takes on disk.
pub const fn encoded_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len
}

fn checksum(header_without_crc: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header_without_crc), payload)
}

/// Appends the encoding of one record to `out`.
///
/// # Panics
/// If `payload` exceeds [`MAX_PAYLOAD`]; callers check first (the WAL
/// returns [`crate::Error::RecordTooLarge`]).
pub fn encode(lsn: u64, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= MAX_PAYLOAD, "record payload over MAX_PAYLOAD must be refused before encoding");
    let mut header = [0u8; HEADER_LEN];
    header[0] = KIND_DATA;
    header[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[5..13].copy_from_slice(&lsn.to_le_bytes());
    let crc = checksum(&header[..13], payload);
    header[13..17].copy_from_slice(&crc.to_le_bytes());
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

/// A record decoded in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its log sequence number.
    pub lsn: u64,
    /// Its payload, borrowed from the input buffer.
    pub payload: &'a [u8],
}

/// What [`decode_one`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record taking `size` bytes.
    Record {
        /// The record.
        record: RecordRef<'a>,
        /// Bytes consumed.
        size: usize,
    },
    /// The buffer is empty or starts with a zero byte (possible end of log;
    /// [`decode_stream`] checks the rest is zero too).
    End,
    /// The buffer ends inside a record (its header or payload is cut off).
    Torn,
    /// A complete record is present but fails verification.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `buf`.
pub fn decode_one(buf: &[u8]) -> Decoded<'_> {
    match buf.first() {
        None | Some(0) => return Decoded::End,
        Some(&KIND_DATA) => {}
        Some(_) => return Decoded::Corrupt("unknown record kind"),
    }
    if buf.len() < HEADER_LEN {
        return Decoded::Torn;
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let mut lsn_bytes = [0u8; 8];
    lsn_bytes.copy_from_slice(&buf[5..13]);
    let lsn = u64::from_le_bytes(lsn_bytes);
    let stored_crc = u32::from_le_bytes([buf[13], buf[14], buf[15], buf[16]]);
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt("record length exceeds the maximum");
    }
    let size = HEADER_LEN + len;
    if buf.len() < size {
        return Decoded::Torn;
    }
    let payload = &buf[HEADER_LEN..size];
    if checksum(&buf[..13], payload) != stored_crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    Decoded::Record { record: RecordRef { lsn, payload }, size }
}

/// How a decoded stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The stream ended exactly after a record, or only zero bytes follow
    /// (preallocated space).
    Clean,
    /// The stream ends inside a record starting at `offset`.
    Torn {
        /// Byte offset where the incomplete record starts.
        offset: usize,
    },
    /// A bad record (or non-zero bytes after a zero byte) starts at `offset`.
    Corrupt {
        /// Byte offset of the bad record.
        offset: usize,
        /// What check failed.
        reason: &'static str,
    },
}

/// The result of decoding a whole buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream<'a> {
    /// The valid records, in order, up to the first problem.
    pub records: Vec<RecordRef<'a>>,
    /// Byte offset just after the last valid record.
    pub valid_len: usize,
    /// How the stream ended.
    pub tail: Tail,
}

/// Decodes records from `buf` until the end or the first problem.
///
/// LSN continuity is not checked here; the WAL does that, because it
/// knows which LSN each segment should start at.
pub fn decode_stream(buf: &[u8]) -> Stream<'_> {
    let mut records = Vec::new();
    let mut pos = 0;
    let tail = loop {
        match decode_one(&buf[pos..]) {
            Decoded::Record { record, size } => {
                records.push(record);
                pos += size;
            }
            Decoded::End => {
                break match first_nonzero(&buf[pos..]) {
                    None => Tail::Clean,
                    Some(_) => Tail::Corrupt { offset: pos, reason: "non-zero bytes after a zero (end-of-log) byte" },
                };
            }
            Decoded::Torn => break Tail::Torn { offset: pos },
            Decoded::Corrupt(reason) => break Tail::Corrupt { offset: pos, reason },
        }
    };
    Stream { records, valid_len: pos, tail }
}

/// Index of the first non-zero byte of `buf`, if any.
pub(crate) fn first_nonzero(buf: &[u8]) -> Option<usize> {
    // Word-at-a-time: the zero tail of a preallocated segment can be large.
    let mut chunks = buf.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if u64::from_ne_bytes(w) != 0 {
            return chunk.iter().position(|&b| b != 0).map(|i| base + i);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| b != 0).map(|i| base + i)
}

/// Searches `buf` at every byte offset for a record that passes its
/// checksum; returns the first such offset. Used after a bad record to tell
/// a torn tail (nothing valid follows) from damage in the middle of the log
/// (valid records follow, so something durable would be lost).
pub fn find_valid_record(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        let rel = buf[pos..].iter().position(|&b| b == KIND_DATA)?;
        pos += rel;
        if let Decoded::Record { .. } = decode_one(&buf[pos..]) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(payloads: &[Vec<u8>], first_lsn: u64) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode(first_lsn + i as u64, p, &mut out);
            ends.push(out.len());
        }
        (out, ends)
    }

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20)
    }

    #[test]
    fn zero_filled_space_is_a_clean_end() {
        let (mut buf, _) = encode_all(&[b"a".to_vec(), b"bc".to_vec()], 1);
        buf.extend_from_slice(&[0u8; 4096]);
        let s = decode_stream(&buf);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.tail, Tail::Clean);
    }

    #[test]
    fn garbage_after_a_zero_byte_is_corruption() {
        let (mut buf, ends) = encode_all(&[b"a".to_vec()], 1);
        buf.extend_from_slice(&[0, 0, 7, 0]);
        let s = decode_stream(&buf);
        assert_eq!(s.tail, Tail::Corrupt { offset: ends[0], reason: "non-zero bytes after a zero (end-of-log) byte" });
    }

    proptest! {
        #[test]
        fn roundtrip(ps in payloads(), first in 1u64..u64::MAX / 2) {
            let (buf, _) = encode_all(&ps, first);
            let s = decode_stream(&buf);
            prop_assert_eq!(s.tail, Tail::Clean);
            prop_assert_eq!(s.valid_len, buf.len());
            prop_assert_eq!(s.records.len(), ps.len());
            for (i, (r, p)) in s.records.iter().zip(&ps).enumerate() {
                prop_assert_eq!(r.lsn, first + i as u64);
                prop_assert_eq!(r.payload, &p[..]);
            }
        }

        #[test]
        fn truncation_yields_valid_prefix_and_torn_tail(
            ps in payloads(), cut_frac in 0.0f64..1.0, zero_fill in 0usize..64,
        ) {
            let (buf, ends) = encode_all(&ps, 1);
            let cut = (buf.len() as f64 * cut_frac) as usize;
            // Also model preallocation: the cut-off tail reads back as zeros.
            let mut truncated = buf[..cut].to_vec();
            let complete = ends.iter().filter(|&&e| e <= cut).count();
            let at_boundary = cut == 0 || ends.contains(&cut);
            truncated.extend(std::iter::repeat_n(0u8, zero_fill));
            let s = decode_stream(&truncated);
            // Zero fill can rebuild a cut record whose own last bytes were
            // zeros: then its bytes are all there and it is rightly kept.
            let intact = ends.iter().take_while(|&&e| e <= truncated.len() && truncated[..e] == buf[..e]).count();
            prop_assert_eq!(s.records.len(), intact);
            if intact > complete {
                return Ok(());
            }
            for (r, p) in s.records.iter().zip(&ps) {
                prop_assert_eq!(r.payload, &p[..]);
            }
            if at_boundary {
                prop_assert_eq!(s.tail, Tail::Clean);
            } else {
                // Without zero fill the record is cut short (Torn); with it the
                // length may fit and the checksum fails instead. Both are "not
                // clean" and start where the incomplete record starts.
                let start = if complete == 0 { 0 } else { ends[complete - 1] };
                match s.tail {
                    Tail::Torn { offset } | Tail::Corrupt { offset, .. } => {
                        prop_assert_eq!(offset, start)
                    }
                    Tail::Clean => prop_assert!(false, "cut record reported clean"),
                }
                if zero_fill == 0 {
                    prop_assert_eq!(s.tail, Tail::Torn { offset: start });
                }
            }
        }

        #[test]
        fn bit_flips_are_detected(
            ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..20),
            flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
            bits in prop::collection::vec(0u8..8, 4),
        ) {
            let (buf, _) = encode_all(&ps, 1);
            let mut bad = buf.clone();
            for (i, f) in flips.iter().enumerate() {
                let at = f.index(bad.len());
                bad[at] ^= 1 << bits[i];
            }
            prop_assume!(bad != buf);
            let s = decode_stream(&bad);
            // Never the full, clean stream; and whatever was returned is a
            // prefix of the original records.
            prop_assert!(s.tail != Tail::Clean || s.records.len() < ps.len());
            prop_assert!(s.tail != Tail::Clean, "damage must not look like a clean end");
            for (r, p) in s.records.iter().zip(&ps) {
                prop_assert_eq!(r.payload, &p[..]);
            }
        }

        #[test]
        fn decode_never_panics(buf in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_stream(&buf);
            let _ = find_valid_record(&buf);
        }
    }
}
