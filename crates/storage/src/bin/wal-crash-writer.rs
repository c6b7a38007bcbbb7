//! Crash-test helper: appends records from several threads forever and
//! prints `<lsn> <thread> <seq>` after each one is durable. The crash test
//! SIGKILLs it at random moments and checks that every printed record
//! survived. Usage: `wal-crash-writer <dir> <threads> <segment-size>`.
//!
//! Every payload is `payload(thread, seq)`, so any recovered record (printed
//! or not) can be checked for the right content.

use std::io::Write;
use std::sync::Arc;

use synod_storage::{Wal, WalOptions};

/// The payload thread `t` writes as its `seq`-th record; the crash test has
/// the same function.
fn payload(t: u64, seq: u64) -> Vec<u8> {
    let mut p = format!("t{t} s{seq} ").into_bytes();
    let fill = (seq * 37 + t * 11) % 700;
    p.extend((0..fill).map(|i| b'a' + ((i + seq) % 26) as u8));
    p
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads, segment_size] = &args[..] else {
        return Err("usage: wal-crash-writer <dir> <threads> <segment-size>".into());
    };
    let opts = WalOptions { segment_size: segment_size.parse()?, preallocate: true, ..WalOptions::default() };
    let (wal, _) = Wal::open(dir, opts)?;
    let wal = Arc::new(wal);
    let handles: Vec<_> = (0..threads.parse::<u64>()?)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || -> Result<(), synod_storage::Error> {
                for seq in 0.. {
                    let lsn = wal.append(&payload(t, seq))?;
                    // One write per line: the line reaches the pipe whole.
                    let line = format!("{lsn} {t} {seq}\n");
                    let _ = std::io::stdout().lock().write_all(line.as_bytes());
                    if t == 0 && seq % 50 == 49 {
                        // Exercise compaction under crashes too.
                        wal.truncate_prefix(lsn.saturating_sub(500))?;
                    }
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "writer thread panicked")??;
    }
    Ok(())
}
