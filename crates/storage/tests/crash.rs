//! Kills a real writer process with SIGKILL at random moments and checks
//! that every record it reported durable survives, with the right content,
//! and that the recovered log has no gaps.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use synod_storage::{Lsn, Wal, WalOptions};

/// Same function as in `src/bin/wal-crash-writer.rs`.
fn payload(t: u64, seq: u64) -> Vec<u8> {
    let mut p = format!("t{t} s{seq} ").into_bytes();
    let fill = (seq * 37 + t * 11) % 700;
    p.extend((0..fill).map(|i| b'a' + ((i + seq) % 26) as u8));
    p
}

/// Parses the `t<thread> s<seq> ` prefix a payload starts with.
fn identity(p: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(p).ok()?;
    let mut words = s.split(' ');
    let t = words.next()?.strip_prefix('t')?.parse().ok()?;
    let seq = words.next()?.strip_prefix('s')?.parse().ok()?;
    Some((t, seq))
}

const SEGMENT_SIZE: u64 = 32 * 1024;

#[test]
fn records_reported_durable_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut acked: HashMap<Lsn, (u64, u64)> = HashMap::new();
    for iteration in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(dir.path())
            .arg(rng.u64(1..=8).to_string())
            .arg(SEGMENT_SIZE.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(1..120)));
        child.kill().unwrap(); // SIGKILL
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        child.wait().unwrap();
        // Lines cut by the kill lack their newline; only whole lines count.
        let complete = out.rfind('\n').map_or("", |i| &out[..i]);
        for line in complete.lines() {
            let v: Vec<u64> = line.split(' ').map(|w| w.parse().unwrap()).collect();
            acked.insert(v[0], (v[1], v[2]));
        }

        let mut recovered: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let opts = WalOptions { segment_size: SEGMENT_SIZE, preallocate: true, ..WalOptions::default() };
        let (wal, rec) = Wal::open_with(dir.path(), opts, |l, p| recovered.push((l, p.to_vec())))
            .unwrap_or_else(|e| panic!("iteration {iteration}: recovery refused: {e}"));
        for w in recovered.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "iteration {iteration}: gap in LSNs");
        }
        for (lsn, p) in &recovered {
            let (t, seq) = identity(p).unwrap_or_else(|| panic!("LSN {lsn}: garbage payload"));
            assert_eq!(*p, payload(t, seq), "LSN {lsn}: wrong content");
            if let Some(&id) = acked.get(lsn) {
                assert_eq!(id, (t, seq), "LSN {lsn}: acknowledged record replaced");
            }
        }
        for (&lsn, &(t, seq)) in &acked {
            if lsn >= rec.first_lsn {
                assert!(
                    lsn <= rec.last_lsn,
                    "iteration {iteration}: acknowledged LSN {lsn} (t{t} s{seq}) lost; log ends at {}",
                    rec.last_lsn
                );
            }
        }
        // Visible with --nocapture: how much each round exercised.
        eprintln!(
            "iter {iteration}: acked {} recovered {}..={} segs {} torn {:?}",
            acked.len(),
            rec.first_lsn,
            rec.last_lsn,
            rec.segments,
            rec.torn_tail.as_ref().map(|t| t.discarded_bytes)
        );
        // Forget what compaction removed, to keep the map small.
        acked.retain(|&l, _| l >= rec.first_lsn);
        drop(wal);
    }
    assert!(!acked.is_empty(), "the writer never acknowledged anything");
}
