//! One HPACK header block of the client's, decoded as the server will decode
//! it, and encoded again with a bare `:authority` when it named a URL.
//!
//! The decoder here is a mirror of the server's: it sees every header block
//! of the connection, in order, so its dynamic table is the one the
//! client's encoder has in mind. A block encoded again uses no dynamic
//! table at all (every field a literal "without indexing"), so it leaves
//! the server's table as it was, and it cannot refer to a table the server
//! no longer shares with the client. That also means the server's table
//! and the client's part ways from the first block encoded again: from
//! then on, every block of the connection has to be encoded again
//! (`always`).
//!
//! This module never decides what a header means beyond `:authority`, and
//! never lets a block, however crafted, cost more memory than the bounds
//! below.

use loona_hpack::encoder::encode_integer_into;
use loona_hpack::Decoder;

/// The dynamic table the server's decoder allows: h2 advertises no
/// SETTINGS_HEADER_TABLE_SIZE, so it is the protocol's default. A client's
/// size update beyond it is an error at the server, and here.
pub const SERVER_HEADER_TABLE_SIZE: usize = 4096;

/// The largest block encoded again. The server refuses a header list of
/// more than 16 KiB (hyper's default SETTINGS_MAX_HEADER_LIST_SIZE, which
/// counts 32 bytes per field beyond name and value), so a real request
/// never comes near; a larger one is not encoded again (see
/// [`Outcome::TooLarge`]), since each byte of a block can expand to a
/// whole table entry.
pub const MAX_ENCODED: usize = 64 * 1024;

/// What became of one header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It goes on as the client sent it.
    Unchanged,
    /// It was encoded again: [`HeaderBlocks::encoded`] holds the new block.
    Rewritten,
    /// It is not valid HPACK (for the client's table as the mirror has
    /// it): the server will refuse it too.
    Malformed,
    /// Encoded again, it would exceed [`MAX_ENCODED`].
    TooLarge,
}

/// The mirror of the server's HPACK decoder for one connection, and the
/// encoding of blocks that need a bare authority.
pub struct HeaderBlocks {
    decoder: Decoder<'static>,
    encoded: Vec<u8>,
}

impl Default for HeaderBlocks {
    fn default() -> HeaderBlocks {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(SERVER_HEADER_TABLE_SIZE);
        HeaderBlocks { decoder, encoded: Vec::new() }
    }
}

impl HeaderBlocks {
    /// Decodes one complete header block (the fragments of a HEADERS frame
    /// and its CONTINUATIONs, joined), keeping the table in step with the
    /// client's. The block is encoded again if its `:authority` names a URL
    /// (see [`bare_authority`]), or whatever it holds if `always`.
    pub fn rewrite(&mut self, block: &[u8], always: bool) -> Outcome {
        self.encoded.clear();
        let mut rewrite = always;
        let mut overflow = false;
        let encoded = &mut self.encoded;
        let decoded = self.decoder.decode_with_cb(block, |name, value| {
            let mut value: &[u8] = &value;
            if &*name == b":authority" {
                if let Some(bare) = bare_authority(value) {
                    value = bare;
                    rewrite = true;
                }
            }
            // Every field is encoded, in case a later one (an authority
            // after the other pseudo-headers) calls for it; a block that
            // does not is passed on as it came and this is dropped.
            if !overflow && !encode_literal(encoded, &name, value) {
                overflow = true;
            }
        });
        match decoded {
            Err(_) => Outcome::Malformed,
            Ok(()) if !rewrite => Outcome::Unchanged,
            Ok(()) if overflow => Outcome::TooLarge,
            Ok(()) => Outcome::Rewritten,
        }
    }

    /// The block [`HeaderBlocks::rewrite`] encoded last.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

/// Appends a "literal header field without indexing, new name" (RFC 7541
/// section 6.2.2), strings as they are (no Huffman coding), unless it would
/// take `out` past [`MAX_ENCODED`]. Returns whether it was appended.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> bool {
    // One byte of representation, and up to 5 bytes of length per string
    // (lengths up to MAX_ENCODED take at most 3).
    let room = MAX_ENCODED.saturating_sub(out.len());
    if name.len().saturating_add(value.len()).saturating_add(11) > room {
        return false;
    }
    out.push(0x00);
    for s in [name, value] {
        // Writing to a Vec cannot fail.
        let _ = encode_integer_into(s.len(), 7, 0x00, out);
        out.extend_from_slice(s);
    }
    true
}

/// The bare authority (`host:port`) for an `:authority` value that names a
/// URL, as etcd's Go client sends it, or `None` if the value is to be left
/// alone:
/// * `http://host:port` or `https://host:port` (clientv3 3.4's per-endpoint
///   calls, such as `etcdctl endpoint status`): what follows the scheme, up
///   to a path, query or fragment;
/// * `#initially=[url;url...]` (clientv3 3.5.0's target): the first
///   endpoint's, with or without a scheme.
pub fn bare_authority(value: &[u8]) -> Option<&[u8]> {
    const INITIALLY: &[u8] = b"#initially=[";
    if let Some(list) = strip_prefix_ignore_case(value, INITIALLY) {
        let first = list.split(|&b| b == b';' || b == b']').next().unwrap_or_default();
        let bare = without_scheme(first).unwrap_or(first);
        return (!bare.is_empty()).then_some(bare);
    }
    without_scheme(value).filter(|bare| !bare.is_empty())
}

/// What follows `http://` or `https://`, up to a path, query or fragment.
fn without_scheme(url: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ignore_case(url, b"http://").or_else(|| strip_prefix_ignore_case(url, b"https://"))?;
    let end = rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;

    #[test]
    fn bare_authority_strips_schemes_and_etcd_35_targets_only() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("https://127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("HTTPS://example.com:2379/", Some("example.com:2379")),
            ("http://[::1]:2379/some/path?q#f", Some("[::1]:2379")),
            ("http://example.com", Some("example.com")),
            ("#initially=[http://10.0.0.1:2379;http://10.0.0.2:2379]", Some("10.0.0.1:2379")),
            ("#initially=[https://a.example:2379]", Some("a.example:2379")),
            ("#initially=[ds-etcd.default:2379]", Some("ds-etcd.default:2379")),
            // Left alone: already bare, other schemes, nothing left.
            ("127.0.0.1:2379", None),
            ("localhost", None),
            ("", None),
            ("unix://socket", None),
            ("http://", None),
            ("#initially=[]", None),
            ("http:/x", None),
        ];
        for &(value, want) in cases {
            assert_eq!(bare_authority(value.as_bytes()), want.map(str::as_bytes), "{value:?}");
        }
    }

    fn fields(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    fn encode(encoder: &mut Encoder, list: &[(&str, &str)]) -> Vec<u8> {
        encoder.encode(list.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    #[test]
    fn block_with_a_url_authority_is_encoded_again_with_the_bare_one() {
        let mut client = Encoder::new();
        let mut server = Decoder::new();
        let mut mirror = HeaderBlocks::default();
        let request = [(":method", "POST"), (":path", "/x"), (":authority", "http://h:1"), ("te", "trailers")];
        for round in 0..3 {
            // The second and third rounds refer to the client's table.
            let block = encode(&mut client, &request);
            assert_eq!(mirror.rewrite(&block, round > 0), Outcome::Rewritten);
            let got = server.decode(mirror.encoded()).unwrap();
            assert_eq!(got, fields(&[(":method", "POST"), (":path", "/x"), (":authority", "h:1"), ("te", "trailers")]));
        }
    }

    #[test]
    fn block_with_a_bare_authority_is_unchanged_but_followed() {
        let mut client = Encoder::new();
        let mut mirror = HeaderBlocks::default();
        let first = encode(&mut client, &[(":authority", "h:1"), ("x-big", "one")]);
        assert_eq!(mirror.rewrite(&first, false), Outcome::Unchanged);
        // Refers to the table entries the first block made.
        let second = encode(&mut client, &[(":authority", "h:1"), ("x-big", "one")]);
        assert_eq!(mirror.rewrite(&second, true), Outcome::Rewritten);
        let got = Decoder::new().decode(mirror.encoded()).unwrap();
        assert_eq!(got, fields(&[(":authority", "h:1"), ("x-big", "one")]));
    }

    #[test]
    fn huffman_coded_request_of_rfc_7541_is_decoded() {
        // RFC 7541 C.4.1: GET http://www.example.com/, Huffman-coded.
        let block =
            [0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff];
        let mut mirror = HeaderBlocks::default();
        assert_eq!(mirror.rewrite(&block, true), Outcome::Rewritten);
        let got = Decoder::new().decode(mirror.encoded()).unwrap();
        assert_eq!(
            got,
            fields(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")])
        );
    }

    #[test]
    fn malformed_and_oversized_blocks_are_reported() {
        let mut mirror = HeaderBlocks::default();
        // An index no table has.
        assert_eq!(mirror.rewrite(&[0xff, 0x7f], false), Outcome::Malformed);
        // A table size beyond the server's.
        assert_eq!(mirror.rewrite(&[0x3f, 0xe1, 0x3f, 0x82], false), Outcome::Malformed);
        // One 4 KiB entry, then 20 references to it: 80 KiB decoded.
        let mut mirror = HeaderBlocks::default();
        let mut client = Encoder::new();
        let big = "v".repeat(4000);
        let mut block = encode(&mut client, &[(":authority", "http://h:1"), ("x-big", &big)]);
        for _ in 0..20 {
            block.extend(encode(&mut client, &[("x-big", &big)]));
        }
        assert_eq!(mirror.rewrite(&block, false), Outcome::TooLarge);
    }
}
