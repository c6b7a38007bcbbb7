//! What reading client connections through `authority_header` costs, with
//! no I/O: the start of a connection (until its first request decides), and
//! each request of a connection whose requests are encoded again.
//!
//! Times are the benchmark thread's CPU time, not wall time, so that other
//! work on the machine's two shared cores does not count.
//!
//! `cargo bench -p synod-server --bench authority_header`

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use synod_server::authority_header::scanner::{Scanner, PREFACE};

/// The calling thread's CPU time, in nanoseconds.
struct CpuTime(WallTime);

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only to the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID is available on Linux");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, ns: &u64) -> f64 {
        *ns as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, formatted as durations.
        self.0.formatter()
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Debian's etcdctl 3.4.23 `endpoint status` on an http:// endpoint: its
/// whole connection (preface, SETTINGS, WINDOW_UPDATE, one request with a
/// Huffman-coded URL authority, its DATA).
const ETCDCTL_34_STATUS: &str =
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000000400000000000000000401000000000000\
770104000000018386459760a924882d9dcb6571afa066a925a87510ac6e48d36a3f41909d29aee30c044eae05c0b86e34cb2ebf5f8b1d75d06\
20d263d4c4d65647a8b9acac8b4c7602bb2caecff40027465864d833505b11f40899acac8b24d494f6a7f8669f7da75a7ed408d25062d495875\
996ee5b1063d5f03332e340000050001000000010000000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A connection of `requests` KV.Put calls with `authority`, encoded as a
/// client encodes them (fields indexed, so from the second request on the
/// fixed ones are one byte each) with a `grpc-timeout` that changes every
/// time, each request a HEADERS frame and a 300-byte DATA frame. With
/// `huffman`, each request also carries a Huffman-coded literal, as Go's
/// clients code theirs (`cache-control: no-cache`, RFC 7541 C.4.2, not
/// indexed).
fn puts(authority: &str, requests: u32, huffman: bool) -> Vec<u8> {
    let mut encoder = loona_hpack::Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[0, 4, 0, 0x40, 0, 0]));
    for i in 0..requests {
        let timeout = format!("{}u", 4_999_000 + i);
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.KV/Put"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-go/1.26.0"),
            ("te", "trailers"),
            ("grpc-timeout", &timeout),
        ];
        let mut block = encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
        if huffman {
            block.extend_from_slice(&[0x0f, 0x09, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
        }
        let stream = 2 * i + 1;
        out.extend(frame(0x1, 0x4, stream, &block));
        out.extend(frame(0x0, 0x1, stream, &[0x5a; 300]));
    }
    out
}

/// Scans `input` in reads of `read` bytes, as the wrapper does; returns the
/// bytes the server gets.
fn scan(input: &[u8], read: usize) -> usize {
    let mut scanner = Scanner::default();
    let mut delivered = 0;
    for chunk in input.chunks(read) {
        delivered += scanner.scan(chunk).expect("a well-formed stream");
        loop {
            delivered += scanner.pending().len();
            scanner.consume(scanner.pending().len());
            if !scanner.has_unscanned() {
                break;
            }
            scanner.resume().expect("a well-formed stream");
        }
    }
    delivered
}

fn connection_start(c: &mut Criterion<CpuTime>) {
    let mut group = c.benchmark_group("authority_header/connection_start");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("bare_authority", puts("127.0.0.1:2379", 1, false)),
        ("url_authority", puts("http://127.0.0.1:2379", 1, false)),
        ("etcdctl_34_capture", unhex(ETCDCTL_34_STATUS)),
    ];
    for (name, input) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| scan(black_box(input), 16 * 1024))
        });
    }
    group.finish();
}

fn per_request(c: &mut Criterion<CpuTime>) {
    const REQUESTS: u32 = 1000;
    let mut group = c.benchmark_group("authority_header/put_requests");
    group.throughput(Throughput::Elements(u64::from(REQUESTS)));
    group.sample_size(30);
    let cases = [
        // Steps aside after the first request: the rest is only copied out
        // of the scanner here (the wrapper reads it straight through).
        ("bare_authority", puts("127.0.0.1:2379", REQUESTS, true)),
        // Every request decoded and encoded again.
        ("url_authority", puts("http://127.0.0.1:2379", REQUESTS, false)),
        ("url_authority_huffman", puts("http://127.0.0.1:2379", REQUESTS, true)),
    ];
    for (name, input) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| scan(black_box(input), 16 * 1024))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime(WallTime));
    targets = connection_start, per_request
}
criterion_main!(benches);
