//! The scanner and the connection wrapper, against client byte streams:
//! a capture of etcdctl 3.4, streams built frame by frame, and random and
//! mutated ones. "The server" here is a fresh HPACK decoder that reads the
//! scanner's output as h2 would: it must see what the client meant, with a
//! bare authority, whatever the cuts between reads.

use super::header_block::{bare_authority, MAX_ENCODED};
use super::scanner::{Refused, Scanner, MAX_BLOCK, MAX_FRAME, PENDING_LIMIT, PREFACE};
use super::AuthorityFix;
use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// What the pending bytes may grow to while one read is scanned: the limit,
/// one block's worth, the frame headers around it, and the read itself.
fn pending_bound(read: usize) -> usize {
    PENDING_LIMIT + MAX_BLOCK.max(MAX_ENCODED) + 128 + read
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// How a header block is framed by the client.
#[derive(Clone, Debug, Default)]
struct Framing {
    /// Fragment bytes per frame (0: all in the HEADERS frame).
    piece: usize,
    /// Padding of the HEADERS frame, if PADDED.
    padding: Option<u8>,
    /// PRIORITY fields of the HEADERS frame.
    priority: Option<[u8; 5]>,
    end_stream: bool,
}

/// A header block as the client sends it: encoded by `encoder` (which
/// indexes fields, so later blocks refer to earlier ones) and framed.
fn block(encoder: &mut Encoder, stream: u32, fields: &[(Vec<u8>, Vec<u8>)], framing: &Framing) -> Vec<u8> {
    let fragment = encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])));
    let piece = if framing.piece == 0 { fragment.len().max(1) } else { framing.piece };
    let mut pieces: Vec<&[u8]> = fragment.chunks(piece).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut flags = if last { END_HEADERS } else { 0 };
        if i == 0 {
            let mut payload = Vec::new();
            if let Some(pad) = framing.padding {
                flags |= PADDED;
                payload.push(pad);
            }
            if let Some(prio) = framing.priority {
                flags |= PRIORITY;
                payload.extend_from_slice(&prio);
            }
            if framing.end_stream {
                flags |= END_STREAM;
            }
            payload.extend_from_slice(p);
            payload.extend(std::iter::repeat_n(0, framing.padding.map_or(0, usize::from)));
            out.extend(frame(HEADERS, flags, stream, &payload));
        } else {
            out.extend(frame(CONTINUATION, flags, stream, p));
        }
    }
    out
}

fn fields(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

fn request(authority: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// The client's bytes, fed to a scanner in reads cut `cuts` bytes long (in
/// turn, the last one repeated), and read out as the wrapper reads them:
/// the bytes the server gets.
fn scanned(input: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Refused> {
    let mut scanner = Scanner::default();
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let cut = cuts.get(i).or(cuts.last()).copied().unwrap_or(rest.len()).clamp(1, rest.len());
        i += 1;
        let (read, after) = rest.split_at(cut);
        rest = after;
        let keep = scanner.scan(read)?;
        assert!(keep <= read.len());
        out.extend_from_slice(&read[..keep]);
        drain(&mut scanner, &mut out, read.len())?;
    }
    scanner.finish();
    drain(&mut scanner, &mut out, 0)?;
    Ok(out)
}

fn drain(scanner: &mut Scanner, out: &mut Vec<u8>, read: usize) -> Result<(), Refused> {
    loop {
        assert!(scanner.pending().len() <= pending_bound(read), "pending grew to {}", scanner.pending().len());
        out.extend_from_slice(scanner.pending());
        scanner.consume(scanner.pending().len());
        if !scanner.has_unscanned() {
            return Ok(());
        }
        scanner.resume()?;
    }
}

/// What the server makes of a connection's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Frame { kind: u8, flags: u8, stream: u32, payload: Vec<u8> },
    Block { stream: u32, end_stream: bool, priority: Option<Vec<u8>>, fields: Vec<(Vec<u8>, Vec<u8>)> },
}

/// A header block the server has begun to read.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<Vec<u8>>,
    fragments: Vec<u8>,
}

/// Reads a client's bytes as the server would (preface, frames, header
/// blocks decoded with one decoder for the connection), or says why not.
fn as_server(bytes: &[u8]) -> Result<Vec<Seen>, String> {
    let mut rest = bytes.strip_prefix(PREFACE).ok_or("no preface")?;
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut open: Option<OpenBlock> = None;
    while !rest.is_empty() {
        let h = rest.get(..9).ok_or("torn frame header")?;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        let mut payload = rest.get(9..9 + len).ok_or("torn frame")?;
        rest = &rest[9 + len..];
        if let Some(block) = open.as_mut() {
            if kind != CONTINUATION || stream != block.stream {
                return Err("frame inside a header block".into());
            }
            block.fragments.extend_from_slice(payload);
        } else if kind == HEADERS {
            if flags & PADDED != 0 {
                let pad = usize::from(*payload.first().ok_or("no pad length")?);
                payload = payload.get(1..payload.len().checked_sub(pad).ok_or("pad")?).ok_or("pad")?;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                priority = Some(payload.get(..5).ok_or("priority")?.to_vec());
                payload = &payload[5..];
            }
            open =
                Some(OpenBlock { stream, end_stream: flags & END_STREAM != 0, priority, fragments: payload.to_vec() });
        } else {
            seen.push(Seen::Frame { kind, flags, stream, payload: payload.to_vec() });
            continue;
        }
        if flags & END_HEADERS != 0 {
            let OpenBlock { stream, end_stream, priority, fragments } = open.take().expect("a block is open");
            let fields = decoder.decode(&fragments).map_err(|e| format!("HPACK: {e:?}"))?;
            seen.push(Seen::Block { stream, end_stream, priority, fields });
        }
    }
    if open.is_some() {
        return Err("unfinished header block".into());
    }
    Ok(seen)
}

/// What the server should make of the scanner's output: what it would make
/// of the client's bytes, with bare authorities.
fn made_bare(seen: Vec<Seen>) -> Vec<Seen> {
    seen.into_iter()
        .map(|s| match s {
            Seen::Block { stream, end_stream, priority, fields } => Seen::Block {
                stream,
                end_stream,
                priority,
                fields: fields
                    .into_iter()
                    .map(|(n, v)| {
                        let v = match bare_authority(&v) {
                            Some(bare) if n == b":authority" => bare.to_vec(),
                            _ => v,
                        };
                        (n, v)
                    })
                    .collect(),
            },
            frame => frame,
        })
        .collect()
}

/// Every frame of the server's bytes is within the size every server
/// accepts.
fn frames_fit(bytes: &[u8]) -> bool {
    let mut rest = &bytes[PREFACE.len()..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        if len > MAX_FRAME {
            return false;
        }
        rest = &rest[(9 + len).min(rest.len())..];
    }
    true
}

/// Debian's etcdctl 3.4.23, `--endpoints http://127.0.0.1:43379 endpoint
/// status`: everything it sent on its connection (preface, SETTINGS,
/// WINDOW_UPDATE, the Status request's HEADERS with a Huffman-coded
/// `:authority` added to the table, its DATA).
const ETCDCTL_34_STATUS: &str =
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000000400000000000000000401000000000000\
770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e34cb2ebf5f8b1d75d06\
20d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8669f7da75a7ed408d25062d495875\
996ee5b1063d5f03332e340000050001000000010000000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn etcdctl_34_endpoint_status_reaches_the_server_with_a_bare_authority() {
    let input = unhex(ETCDCTL_34_STATUS);
    let client = as_server(&input).unwrap();
    let authority = |seen: &[Seen]| {
        seen.iter()
            .find_map(|s| match s {
                Seen::Block { fields, .. } => fields.iter().find(|(n, _)| n == b":authority").map(|(_, v)| v.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(authority(&client), b"http://127.0.0.1:43379");
    // Every cut between two reads, and one byte per read.
    for cut in 1..=input.len() {
        for cuts in [vec![cut, input.len()], vec![cut]] {
            let out = scanned(&input, &cuts).unwrap();
            let server = as_server(&out).unwrap();
            assert_eq!(authority(&server), b"127.0.0.1:43379");
            assert_eq!(server, made_bare(client.clone()), "cuts {cuts:?}");
        }
    }
}

#[test]
fn connection_with_bare_authorities_passes_byte_identical() {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    input.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
    for stream in [1u32, 3, 5] {
        input.extend(block(&mut enc, stream, &request("127.0.0.1:2379", "/etcdserverpb.KV/Put"), &Framing::default()));
        input.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 3, 1, 2, 3]));
    }
    for cuts in [vec![1], vec![5], vec![100], vec![input.len()]] {
        assert_eq!(scanned(&input, &cuts).unwrap(), input, "cuts {cuts:?}");
    }
}

#[test]
fn every_block_after_a_rewritten_one_is_consistent_for_the_server() {
    // The encoder indexes the URL authority in the first block and refers
    // to it in later ones; trailers carry none at all.
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    let mut with_url = request("https://10.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    with_url.push((b"x-indexed".to_vec(), b"http://10.0.0.1:2379".to_vec()));
    for stream in [1u32, 3, 5, 7] {
        input.extend(block(&mut enc, stream, &with_url, &Framing::default()));
        input.extend(frame(DATA, 0, stream, b"payload"));
        input.extend(block(
            &mut enc,
            stream,
            &fields(&[("grpc-status", "0")]),
            &Framing { end_stream: true, ..Default::default() },
        ));
    }
    let out = scanned(&input, &[7, 3, 11]).unwrap();
    let server = as_server(&out).unwrap();
    assert_eq!(server, made_bare(as_server(&input).unwrap()));
    // Only :authority changes: a header that merely looks like a URL stays.
    let Seen::Block { fields, .. } = &server[0] else { panic!("a block first") };
    assert!(fields.contains(&(b":authority".to_vec(), b"10.0.0.1:2379".to_vec())));
    assert!(fields.contains(&(b"x-indexed".to_vec(), b"http://10.0.0.1:2379".to_vec())));
}

#[test]
fn rewritten_block_over_a_frame_is_cut_into_continuations() {
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    let mut big = request("http://h:2379", "/p");
    for i in 0..5 {
        big.push((format!("x-big-{i}").into_bytes(), vec![b'a' + i as u8; 7000]));
    }
    let framing = Framing { piece: 5000, padding: Some(17), priority: Some([0x80, 0, 0, 3, 200]), end_stream: true };
    input.extend(block(&mut enc, 1, &big, &framing));
    let out = scanned(&input, &[4096]).unwrap();
    assert!(frames_fit(&out));
    let server = as_server(&out).unwrap();
    assert_eq!(server, made_bare(as_server(&input).unwrap()));
    // The PRIORITY fields and END_STREAM survive; the padding does not.
    let Seen::Block { priority, end_stream, .. } = &server[0] else { panic!("a block") };
    assert_eq!(priority.as_deref(), Some(&[0x80, 0, 0, 3, 200][..]));
    assert!(*end_stream);
    assert_eq!(out[PREFACE.len() + 4] & (PADDED | END_HEADERS), 0, "first of several frames, unpadded");
}

#[test]
fn oversized_block_passes_unchanged_first_and_closes_the_connection_later() {
    let big = "v".repeat(MAX_BLOCK);
    let mut enc = Encoder::new();
    let mut first = PREFACE.to_vec();
    let mut fields = request("http://h:1", "/p");
    fields.push((b"x-big".to_vec(), big.clone().into_bytes()));
    first.extend(block(&mut enc, 1, &fields, &Framing { piece: 16_000, ..Default::default() }));
    first.extend(frame(PING, 0, 0, &[1; 8]));
    assert_eq!(scanned(&first, &[1000]).unwrap(), first, "too large to decode: passed on as it came");

    let mut enc = Encoder::new();
    let mut later = PREFACE.to_vec();
    later.extend(block(&mut enc, 1, &request("http://h:1", "/p"), &Framing::default()));
    later.extend(block(&mut enc, 3, &fields, &Framing { piece: 16_000, ..Default::default() }));
    assert_eq!(scanned(&later, &[1000]), Err(Refused));
}

#[test]
fn malformed_first_block_and_other_protocols_pass_unchanged() {
    let mut bad_hpack = PREFACE.to_vec();
    bad_hpack.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0x7f]));
    bad_hpack.extend(frame(DATA, 0, 1, b"abc"));
    let mut bad_padding = PREFACE.to_vec();
    bad_padding.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]));
    let mut interleaved = PREFACE.to_vec();
    interleaved.extend(frame(HEADERS, 0, 1, &[0x82]));
    interleaved.extend(frame(DATA, 0, 1, b"abc"));
    interleaved.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x84]));
    let http1 = b"GET / HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
    let torn = [PREFACE, &[0, 0, 10, HEADERS, END_HEADERS, 0, 0, 0, 1, 0x82][..]].concat();
    for input in [bad_hpack, bad_padding, interleaved, http1, torn] {
        for cuts in [vec![1], vec![3], vec![input.len()]] {
            assert_eq!(scanned(&input, &cuts).unwrap(), input);
        }
    }
}

#[test]
fn small_blocks_that_decode_large_wait_instead_of_piling_up() {
    // One 4 KB table entry, then blocks of a few bytes that each refer to
    // it: all in one read, they would decode to megabytes.
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    let big = vec![b'x'; 4000];
    for stream in (1..600u32).step_by(2) {
        let fields = vec![(b":authority".to_vec(), b"http://h:1".to_vec()), (b"x-big".to_vec(), big.clone())];
        input.extend(block(&mut enc, stream, &fields, &Framing::default()));
    }
    let out = scanned(&input, &[input.len()]).unwrap();
    assert!(out.len() > 1_000_000, "{}", out.len());
    assert_eq!(as_server(&out).unwrap(), made_bare(as_server(&input).unwrap()));
}

#[tokio::test]
async fn wrapper_reads_what_the_scanner_makes_through_small_buffers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut enc = Encoder::new();
    let mut input = PREFACE.to_vec();
    for stream in [1u32, 3] {
        input.extend(block(&mut enc, stream, &request("http://127.0.0.1:2379", "/p"), &Framing::default()));
        input.extend(frame(DATA, END_STREAM, stream, &[7; 300]));
    }
    let want = scanned(&input, &[input.len()]).unwrap();
    let (mut client, server) = tokio::io::duplex(13);
    let writer = tokio::spawn({
        let input = input.clone();
        async move {
            for piece in input.chunks(11) {
                client.write_all(piece).await.unwrap();
            }
        }
    });
    let mut fix = AuthorityFix::new(server);
    let mut got = Vec::new();
    let mut buf = [0u8; 17];
    loop {
        let n = fix.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    writer.await.unwrap();
    assert_eq!(got, want);
    assert_eq!(as_server(&got).unwrap(), made_bare(as_server(&input).unwrap()));
}

// ---- Random streams ----

/// One thing the client sends.
#[derive(Clone, Debug)]
enum Sent {
    Frame { kind: u8, flags: u8, payload: Vec<u8> },
    Block { fields: Vec<(Vec<u8>, Vec<u8>)>, framing: Framing },
}

fn token() -> impl Strategy<Value = String> {
    "[a-z0-9.-]{1,12}"
}

fn bare() -> impl Strategy<Value = String> {
    (token(), 1u16..).prop_map(|(h, p)| format!("{h}:{p}"))
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        bare().prop_map(|a| format!("http://{a}")),
        bare().prop_map(|a| format!("HTTPS://{a}/")),
        prop::collection::vec(bare(), 1..3).prop_map(|l| format!("#initially=[http://{}]", l.join(";http://"))),
    ]
}

fn framing() -> impl Strategy<Value = Framing> {
    (0usize..40, prop::option::of(any::<u8>()), prop::option::of(any::<[u8; 5]>()), any::<bool>())
        .prop_map(|(piece, padding, priority, end_stream)| Framing { piece, padding, priority, end_stream })
}

/// A header block: a request with `authority`, or trailers with none.
fn header_block(authority: BoxedStrategy<String>) -> impl Strategy<Value = Sent> {
    let extra = prop::collection::vec((token(), "[ -~]{0,40}"), 0..4);
    (prop::option::of(authority), extra, framing()).prop_map(|(authority, extra, framing)| {
        let mut fields = match authority {
            Some(a) => request(&a, "/etcdserverpb.KV/Range"),
            None => fields(&[("grpc-status", "0")]),
        };
        fields.extend(extra.into_iter().map(|(n, v)| (format!("x-{n}").into_bytes(), v.into_bytes())));
        Sent::Block { fields, framing }
    })
}

fn other_frame() -> impl Strategy<Value = Sent> {
    prop_oneof![
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(flags, payload)| Sent::Frame {
            kind: DATA,
            flags: flags & END_STREAM,
            payload
        }),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(|s| Sent::Frame {
            kind: SETTINGS,
            flags: 0,
            payload: s.repeat(6)
        }),
        any::<[u8; 8]>().prop_map(|p| Sent::Frame { kind: PING, flags: 0, payload: p.to_vec() }),
        any::<[u8; 4]>().prop_map(|p| Sent::Frame { kind: WINDOW_UPDATE, flags: 0, payload: p.to_vec() }),
    ]
}

/// A connection: the first block's authority from `first`, later ones'
/// from `later`, frames of other kinds between them.
fn connection(first: BoxedStrategy<String>, later: BoxedStrategy<String>) -> impl Strategy<Value = Vec<u8>> {
    let first = (framing(), first).prop_map(|(framing, a)| Sent::Block { fields: request(&a, "/x"), framing });
    let rest = prop::collection::vec(prop_oneof![header_block(later), other_frame()], 0..12);
    (prop::collection::vec(other_frame(), 0..3), first, rest).prop_map(|(before, first, rest)| {
        let mut enc = Encoder::new();
        let mut out = PREFACE.to_vec();
        for (i, sent) in before.into_iter().chain([first]).chain(rest).enumerate() {
            let stream = 2 * i as u32 + 1;
            match sent {
                Sent::Frame { kind, flags, payload } => out.extend(frame(kind, flags, stream, &payload)),
                Sent::Block { fields, framing } => out.extend(block(&mut enc, stream, &fields, &framing)),
            }
        }
        out
    })
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..16, 1usize..4096], 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn streams_without_url_authorities_pass_byte_identical(
        input in connection(bare().boxed(), bare().boxed()),
        cuts in cuts(),
    ) {
        prop_assert_eq!(scanned(&input, &cuts).unwrap(), input);
    }

    #[test]
    fn url_authorities_reach_the_server_bare_and_all_else_as_sent(
        input in connection(url().boxed(), prop_oneof![url(), bare()].boxed()),
        cuts in cuts(),
    ) {
        let out = scanned(&input, &cuts).unwrap();
        prop_assert!(frames_fit(&out));
        prop_assert_eq!(as_server(&out).unwrap(), made_bare(as_server(&input).unwrap()));
    }

    #[test]
    fn hostile_bytes_never_panic_or_pile_up(
        input in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2000).prop_map(|b| [PREFACE, &b].concat()),
            prop::collection::vec(any::<u8>(), 0..200),
            connection(url().boxed(), prop_oneof![url(), bare()].boxed()),
        ],
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8),
        cuts in cuts(),
    ) {
        let mut input = input;
        for (at, byte, how) in mutations {
            if input.is_empty() {
                break;
            }
            let i = at.index(input.len());
            match how {
                0 => input[i] = byte,
                1 => input.insert(i, byte),
                _ => input.truncate(i),
            }
        }
        // Refused or not, with pending bytes bounded (checked in drain).
        let _ = scanned(&input, &cuts);
    }
}
