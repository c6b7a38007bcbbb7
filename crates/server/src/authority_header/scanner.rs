//! The client's half of an HTTP/2 connection, frame by frame (sans-IO):
//! bytes read from the client go in, the bytes the server is to read come
//! out, the same except for header blocks whose `:authority` names a URL.
//!
//! Frames other than HEADERS cost a look at their 9-byte header and go on
//! in place, in the reader's own buffer. A HEADERS frame and its
//! CONTINUATIONs are gathered (up to [`MAX_BLOCK`] bytes), decoded by the
//! mirror of the server's HPACK decoder ([`HeaderBlocks`]), and passed on as
//! they came or, encoded again, as new frames of at most [`MAX_FRAME`]
//! bytes (the PRIORITY fields kept, padding dropped).
//!
//! The connection's first header block decides. If it needs no change, the
//! scanner steps aside and everything after passes untouched, without even
//! a look at frame headers: gRPC clients (grpc-go, whose clientv3 sends
//! these URLs, among them) send one `:authority` on every stream of a
//! connection. If it was encoded again, every block after it is too (see
//! [`super::header_block`] for why).
//!
//! Every byte is the client's, and the client may be hostile: lengths are
//! checked before use, nothing is buffered beyond a bound, nothing panics.
//! What the scanner does not understand it passes on as it came, for the
//! server to refuse, except once it has encoded a block again: then the
//! server's HPACK table is no longer the client's, and a block that cannot
//! be encoded again closes the connection ([`Refused`]).

use super::header_block::{HeaderBlocks, Outcome};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The largest frame every HTTP/2 server accepts (the initial
/// SETTINGS_MAX_FRAME_SIZE, which the server here leaves as it is):
/// blocks encoded again are cut into frames of at most this payload.
pub const MAX_FRAME: usize = 16_384;

/// How many bytes for the server may wait in [`Scanner::pending`] before
/// the scanner stops taking in more: a block of a few bytes can decode (and
/// be encoded again) to [`super::header_block::MAX_ENCODED`], so without
/// it a single read of small blocks could cost megabytes.
pub const PENDING_LIMIT: usize = 64 * 1024;

/// The most bytes (frame headers included) of one header block gathered.
/// The server refuses header lists over 16 KiB, so a request never comes
/// near; a larger block is passed on unchanged, or closes the connection
/// once blocks are being encoded again.
pub const MAX_BLOCK: usize = 64 * 1024;

const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// The connection must close: a header block came that the server can no
/// longer be given as it is, and that cannot be encoded again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 header block from the client could not be passed on (malformed, or over {MAX_BLOCK} bytes)")]
pub struct Refused;

/// Where the scanner is in the client's byte stream.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Matching the connection preface: `seen` bytes of it so far.
    Preface { seen: usize },
    /// A frame header: `have` of its 9 bytes so far (kept in `bytes` when
    /// they came in an earlier read).
    Header { bytes: [u8; FRAME_HEADER], have: usize },
    /// The payload of a frame that passes as it is: `left` bytes to go.
    Payload { left: usize },
    /// The payload of a frame of the header block being gathered; `end`:
    /// the block ends with this frame.
    Gather { left: usize, end: bool },
    /// Everything passes as it is, to the end of the connection.
    Through,
    /// The connection must close.
    Refused,
}

/// The scanner of one connection's client-to-server bytes.
pub struct Scanner {
    state: State,
    /// A block was encoded again, so every later one must be.
    rewriting: bool,
    /// The mirror of the server's decoder; dropped once the scanner steps
    /// aside.
    blocks: Option<Box<HeaderBlocks>>,
    /// The stream of the header block being gathered, until its
    /// END_HEADERS.
    open: Option<u32>,
    /// The frames of that block, as they came.
    block: Vec<u8>,
    /// Their fragments, joined, for the decoder.
    fragments: Vec<u8>,
    /// Bytes for the server that could not stay in place: `pending[taken..]`.
    pending: Vec<u8>,
    taken: usize,
    /// Bytes read but not yet looked at, because `pending` was full (see
    /// [`PENDING_LIMIT`]); they come before anything read later.
    unscanned: Vec<u8>,
}

impl Default for Scanner {
    fn default() -> Scanner {
        Scanner {
            state: State::Preface { seen: 0 },
            rewriting: false,
            blocks: Some(Box::default()),
            open: None,
            block: Vec::new(),
            fragments: Vec::new(),
            pending: Vec::new(),
            taken: 0,
            unscanned: Vec::new(),
        }
    }
}

/// Where the bytes of one [`Scanner::scan`] go: the first `in_place` stay
/// where they are, as long as `direct` holds; after that, into `pending`.
struct Placement {
    in_place: usize,
    direct: bool,
}

impl Scanner {
    /// Takes in bytes just read from the client. Returns how many of the
    /// leading ones go on to the server as they are, in place; the rest
    /// were taken in, and what becomes of them is in
    /// [`Scanner::pending`], to be read before anything read later.
    pub fn scan(&mut self, data: &[u8]) -> Result<usize, Refused> {
        if !self.unscanned.is_empty() {
            // Behind bytes not looked at yet.
            self.unscanned.extend_from_slice(data);
            return Ok(0);
        }
        let mut to = Placement { in_place: 0, direct: self.pending().is_empty() && !self.holding() };
        self.run(data, &mut to)?;
        Ok(to.in_place)
    }

    /// Whether bytes taken in wait to be looked at: [`Scanner::resume`]
    /// once [`Scanner::pending`] has been read.
    pub fn has_unscanned(&self) -> bool {
        !self.unscanned.is_empty()
    }

    /// Looks at bytes taken in but not yet looked at (as far as
    /// [`PENDING_LIMIT`] lets it); what becomes of them is in
    /// [`Scanner::pending`].
    pub fn resume(&mut self) -> Result<(), Refused> {
        let data = std::mem::take(&mut self.unscanned);
        self.run(&data, &mut Placement { in_place: 0, direct: false })
    }

    /// Scans `data`, placing its bytes as `to` says, until its end or until
    /// `pending` is full (then the rest waits in `unscanned`).
    fn run(&mut self, data: &[u8], to: &mut Placement) -> Result<(), Refused> {
        let mut i = 0;
        while i < data.len() {
            if self.pending().len() >= PENDING_LIMIT {
                debug_assert!(!to.direct, "pending bytes come before any left in place");
                self.unscanned.extend_from_slice(&data[i..]);
                return Ok(());
            }
            match self.state {
                State::Refused => return Err(Refused),
                State::Through => {
                    self.emit(to, data, i, data.len());
                    i = data.len();
                }
                State::Preface { seen } => {
                    let n = (PREFACE.len() - seen).min(data.len() - i);
                    if data[i..i + n] != PREFACE[seen..seen + n] {
                        // Not HTTP/2: nothing to do here.
                        self.step_aside();
                        continue;
                    }
                    self.emit(to, data, i, i + n);
                    i += n;
                    self.state = if seen + n == PREFACE.len() {
                        State::Header { bytes: [0; FRAME_HEADER], have: 0 }
                    } else {
                        State::Preface { seen: seen + n }
                    };
                }
                State::Header { mut bytes, have } => {
                    if have == 0 && data.len() - i >= FRAME_HEADER {
                        let header = header_at(&data[i..]);
                        i += FRAME_HEADER;
                        self.on_header(header, Some(i - FRAME_HEADER), data, to)?;
                    } else {
                        let n = (FRAME_HEADER - have).min(data.len() - i);
                        bytes[have..have + n].copy_from_slice(&data[i..i + n]);
                        i += n;
                        self.state = State::Header { bytes, have: have + n };
                        // Held until its type is known (this read ends here,
                        // or it began in an earlier one).
                        to.direct = false;
                        if have + n == FRAME_HEADER {
                            self.on_header(bytes, None, data, to)?;
                        }
                    }
                }
                State::Payload { left } => {
                    let n = left.min(data.len() - i);
                    self.emit(to, data, i, i + n);
                    i += n;
                    self.state = if n == left { header_state() } else { State::Payload { left: left - n } };
                }
                State::Gather { left, end } => {
                    let n = left.min(data.len() - i);
                    self.block.extend_from_slice(&data[i..i + n]);
                    i += n;
                    if n < left {
                        self.state = State::Gather { left: left - n, end };
                    } else if end {
                        self.end_block()?;
                    } else {
                        self.state = header_state();
                    }
                }
            }
        }
        Ok(())
    }

    /// The client closed its side: whatever was held goes on as it came,
    /// for the server to make of it what it can.
    pub fn finish(&mut self) {
        if matches!(self.state, State::Refused) {
            return;
        }
        self.pending.extend_from_slice(&self.block);
        self.block.clear();
        if let State::Header { bytes, have } = self.state {
            self.pending.extend_from_slice(&bytes[..have]);
        }
        // (Only if the reader did not resume first.)
        self.pending.append(&mut self.unscanned);
        self.step_aside();
    }

    /// Bytes for the server, to be read before anything read later.
    pub fn pending(&self) -> &[u8] {
        &self.pending[self.taken..]
    }

    /// `n` bytes of [`Scanner::pending`] were handed to the server.
    pub fn consume(&mut self, n: usize) {
        self.taken = self.taken.saturating_add(n).min(self.pending.len());
        if self.taken == self.pending.len() {
            self.taken = 0;
            if matches!(self.state, State::Through) {
                // Nothing more will be held: give the memory back.
                self.pending = Vec::new();
            } else {
                self.pending.clear();
            }
        }
    }

    /// Whether everything from now on passes untouched (so a reader may
    /// skip the scanner once [`Scanner::pending`] is empty).
    pub fn is_through(&self) -> bool {
        matches!(self.state, State::Through)
    }

    /// Whether bytes taken in earlier wait for more to come.
    fn holding(&self) -> bool {
        self.open.is_some() || matches!(self.state, State::Header { have: 1.., .. })
    }

    /// Bytes `data[lo..hi]` go on as they are.
    fn emit(&mut self, to: &mut Placement, data: &[u8], lo: usize, hi: usize) {
        if to.direct {
            debug_assert_eq!(to.in_place, lo, "bytes in place are the leading ones");
            to.in_place = hi;
        } else {
            self.pending.extend_from_slice(&data[lo..hi]);
        }
    }

    /// A whole frame header, read at `data[at]` (or held from earlier
    /// reads if `at` is `None`).
    fn on_header(
        &mut self,
        header: [u8; FRAME_HEADER],
        at: Option<usize>,
        data: &[u8],
        to: &mut Placement,
    ) -> Result<(), Refused> {
        let (len, kind, flags, stream) = parse_header(&header);
        if let Some(open) = self.open {
            if kind != CONTINUATION || stream != open {
                // A frame inside a header block: the server will refuse
                // the connection (RFC 9113 section 6.10).
                self.give_up()?;
                self.pending.extend_from_slice(&header);
                return Ok(());
            }
            return self.gather(header, len, flags & END_HEADERS != 0);
        }
        if kind == HEADERS {
            to.direct = false;
            self.open = Some(stream);
            return self.gather(header, len, flags & END_HEADERS != 0);
        }
        match at {
            Some(at) => self.emit(to, data, at, at + FRAME_HEADER),
            None => self.pending.extend_from_slice(&header),
        }
        self.state = if len == 0 { header_state() } else { State::Payload { left: len } };
        Ok(())
    }

    /// Adds a frame of `len` payload bytes to the block being gathered.
    fn gather(&mut self, header: [u8; FRAME_HEADER], len: usize, end: bool) -> Result<(), Refused> {
        self.block.extend_from_slice(&header);
        if self.block.len().saturating_add(len) > MAX_BLOCK {
            // Passed on as it came; its payload follows as it comes.
            return self.give_up();
        }
        if len > 0 {
            self.state = State::Gather { left: len, end };
        } else if end {
            self.end_block()?;
        } else {
            self.state = header_state();
        }
        Ok(())
    }

    /// The block is complete: decode it, and pass it on or encode it again.
    fn end_block(&mut self) -> Result<(), Refused> {
        self.open = None;
        let Some(blocks) = self.blocks.as_mut() else {
            // Only while stepping aside, where nothing is gathered.
            return self.give_up();
        };
        let Some(first) = fragments_of(&self.block, &mut self.fragments) else {
            return self.give_up();
        };
        match blocks.rewrite(&self.fragments, self.rewriting) {
            Outcome::Unchanged => {
                // The connection's first block needed nothing: neither will
                // the rest.
                debug_assert!(!self.rewriting, "a block is always encoded again once one was");
                self.pending.extend_from_slice(&self.block);
                self.step_aside();
            }
            Outcome::Rewritten => {
                self.rewriting = true;
                write_frames(&mut self.pending, first, blocks.encoded());
                self.block.clear();
                self.state = header_state();
            }
            Outcome::Malformed | Outcome::TooLarge => return self.give_up(),
        }
        Ok(())
    }

    /// The block being gathered cannot be encoded again: it goes on as it
    /// came and the scanner steps aside, unless the server's table no
    /// longer matches the client's (then the connection must close).
    fn give_up(&mut self) -> Result<(), Refused> {
        self.open = None;
        if self.rewriting {
            self.state = State::Refused;
            self.pending = Vec::new();
            self.taken = 0;
            self.unscanned = Vec::new();
            return Err(Refused);
        }
        self.pending.extend_from_slice(&self.block);
        self.step_aside();
        Ok(())
    }

    /// Everything from now on passes as it is.
    fn step_aside(&mut self) {
        self.state = State::Through;
        self.open = None;
        self.blocks = None;
        self.block = Vec::new();
        self.fragments = Vec::new();
    }
}

fn header_state() -> State {
    State::Header { bytes: [0; FRAME_HEADER], have: 0 }
}

/// The 9 bytes at the start of `data` (which has at least that many).
fn header_at(data: &[u8]) -> [u8; FRAME_HEADER] {
    let mut header = [0; FRAME_HEADER];
    header.copy_from_slice(&data[..FRAME_HEADER]);
    header
}

/// A frame header's length, type, flags and stream (reserved bit cleared).
fn parse_header(h: &[u8; FRAME_HEADER]) -> (usize, u8, u8, u32) {
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    (len, h[3], h[4], stream)
}

/// What a header block's HEADERS frame says besides its fragment.
#[derive(Clone, Copy, Debug)]
struct First {
    flags: u8,
    /// The stream id field as it came.
    stream: [u8; 4],
    /// The PRIORITY fields (stream dependency and weight), if any.
    priority: Option<[u8; 5]>,
}

/// Joins the fragments of a gathered block's frames into `fragments`;
/// returns its HEADERS frame's details, or `None` if the padding or
/// priority fields do not fit (a malformed frame).
fn fragments_of(block: &[u8], fragments: &mut Vec<u8>) -> Option<First> {
    fragments.clear();
    let mut first = None;
    let mut rest = block;
    while !rest.is_empty() {
        let (header, after) = rest.split_at_checked(FRAME_HEADER)?;
        let (len, _, flags, _) = parse_header(header.try_into().ok()?);
        let (mut payload, after) = after.split_at_checked(len)?;
        rest = after;
        if first.is_none() {
            if flags & PADDED != 0 {
                let (&pad, padded) = payload.split_first()?;
                payload = padded.get(..padded.len().checked_sub(usize::from(pad))?)?;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let (fields, fragment) = payload.split_at_checked(5)?;
                priority = Some(fields.try_into().ok()?);
                payload = fragment;
            }
            first = Some(First { flags, stream: [header[5], header[6], header[7], header[8]], priority });
        }
        fragments.extend_from_slice(payload);
    }
    first
}

/// Writes a header block as a HEADERS frame and as many CONTINUATIONs as
/// it takes, none over [`MAX_FRAME`].
fn write_frames(out: &mut Vec<u8>, first: First, block: &[u8]) {
    let priority: &[u8] = first.priority.as_ref().map_or(&[], |p| &p[..]);
    let (head, mut rest) = block.split_at(block.len().min(MAX_FRAME - priority.len()));
    let mut flags = first.flags & !(PADDED | END_HEADERS);
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    write_header(out, priority.len() + head.len(), HEADERS, flags, first.stream);
    out.extend_from_slice(priority);
    out.extend_from_slice(head);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = after;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        write_header(out, chunk.len(), CONTINUATION, flags, first.stream);
        out.extend_from_slice(chunk);
    }
}

fn write_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    debug_assert!(len <= MAX_FRAME, "frames are cut to MAX_FRAME");
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream);
}
