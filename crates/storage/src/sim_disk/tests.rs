//! What the simulated disk keeps and loses, and that it does so the same
//! way for the same seed.

use super::*;

fn dir() -> PathBuf {
    PathBuf::from("/node/wal")
}

/// A disk with `/node/wal` created.
fn disk(seed: u64, faults: SimFaults) -> SimDisk {
    let d = SimDisk::with_faults(seed, faults);
    d.create_dir(&dir()).unwrap();
    d
}

/// Creates `name` in the test directory with `content`, synced and with a
/// durable directory entry.
fn durable_file(d: &SimDisk, name: &str, content: &[u8]) -> Box<dyn DiskFile> {
    let f = d.create(&dir().join(name)).unwrap();
    f.write_at(content, 0).unwrap();
    f.sync_data().unwrap();
    d.sync_dir(&dir()).unwrap();
    f
}

const TORN_ALWAYS: SimFaults = SimFaults { write_error: 0.0, sync_error: 0.0, torn_write: 1.0, bit_flip_on_crash: 0.0 };

#[test]
fn unsynced_writes_are_lost_on_crash_and_synced_ones_kept() {
    let d = disk(1, SimFaults::default());
    let f = durable_file(&d, "a", b"durable");
    f.write_at(b"-volatile", 7).unwrap();
    assert_eq!(d.read(&dir().join("a")).unwrap(), b"durable-volatile");
    d.crash();
    assert_eq!(d.read(&dir().join("a")).unwrap(), b"durable");
    assert_eq!(d.stats().lost_writes, 1);
}

#[test]
fn a_crash_makes_earlier_handles_stale() {
    let d = disk(1, SimFaults::default());
    let f = durable_file(&d, "a", b"x");
    d.crash();
    assert!(f.write_at(b"y", 0).is_err());
    assert!(f.sync_data().is_err());
    let g = d.open(&dir().join("a")).unwrap();
    g.write_at(b"y", 1).unwrap();
    g.sync_data().unwrap();
    assert_eq!(d.read(&dir().join("a")).unwrap(), b"xy");
}

#[test]
fn entries_are_volatile_until_the_directory_is_synced() {
    let d = disk(1, SimFaults::default());
    durable_file(&d, "kept", b"1");
    let f = d.create(&dir().join("new")).unwrap();
    f.write_at(b"synced data, unsynced name", 0).unwrap();
    f.sync_data().unwrap();
    d.rename(&dir().join("kept"), &dir().join("renamed")).unwrap();
    d.crash();
    assert_eq!(d.list(&dir()).unwrap(), vec![dir().join("kept")]);
    assert_eq!(d.stats().lost_dir_changes, 2);
    // Synced, the same changes survive.
    let f = d.create(&dir().join("new")).unwrap();
    f.sync_data().unwrap();
    d.remove(&dir().join("kept")).unwrap();
    d.sync_dir(&dir()).unwrap();
    d.crash();
    assert_eq!(d.list(&dir()).unwrap(), vec![dir().join("new")]);
}

#[test]
fn a_torn_crash_keeps_a_prefix_of_the_writes_in_order() {
    // Over many seeds: what survives is always the durable part plus a
    // prefix of the pending writes, the last one cut; and every cut point
    // (nothing, part, all) occurs.
    let mut seen_nothing = false;
    let mut seen_partial = false;
    let mut seen_all = false;
    for seed in 0..200 {
        let d = disk(seed, TORN_ALWAYS);
        let f = durable_file(&d, "a", b"base:");
        f.write_at(b"first;", 5).unwrap();
        f.write_at(b"second;", 11).unwrap();
        d.crash();
        let got = d.read(&dir().join("a")).unwrap();
        let full = b"base:first;second;";
        assert!(full.starts_with(&got), "seed {seed}: {:?} is not a prefix", String::from_utf8_lossy(&got));
        assert!(got.len() >= 5, "seed {seed}: synced bytes lost");
        seen_nothing |= got.len() == 5;
        seen_partial |= got.len() > 5 && got.len() < full.len();
        seen_all |= got.len() == full.len();
        assert_eq!(d.stats().torn_writes, 1);
    }
    assert!(seen_nothing && seen_partial && seen_all, "{seen_nothing} {seen_partial} {seen_all}");
}

#[test]
fn injected_errors_fail_the_call_and_make_nothing_durable() {
    let d = disk(1, SimFaults::default());
    let f = durable_file(&d, "a", b"ok");
    d.fail_next_write();
    assert!(f.write_at(b"lost", 2).is_err());
    assert_eq!(d.read(&dir().join("a")).unwrap(), b"ok");
    f.write_at(b"!", 2).unwrap();
    d.fail_next_sync();
    assert!(f.sync_data().is_err());
    d.crash();
    assert_eq!(d.read(&dir().join("a")).unwrap(), b"ok");
    let s = d.stats();
    assert_eq!((s.write_errors, s.sync_errors), (1, 1));

    // By probability: about that share of calls fail.
    let d = disk(2, SimFaults { write_error: 0.25, sync_error: 0.5, ..SimFaults::default() });
    let f = d.create(&dir().join("b")).unwrap();
    let writes_failed = (0..1000).filter(|i| f.write_at(b"x", *i).is_err()).count();
    let syncs_failed = (0..1000).filter(|_| f.sync_data().is_err()).count();
    assert!((180..320).contains(&writes_failed), "{writes_failed}");
    assert!((420..580).contains(&syncs_failed), "{syncs_failed}");
}

#[test]
fn a_flipped_bit_changes_durable_content_by_one_bit() {
    let d = disk(3, SimFaults::default());
    durable_file(&d, "a", &[0u8; 64]);
    let flip = d.flip_bit().unwrap();
    assert_eq!(flip.path, dir().join("a"));
    let got = d.read(&dir().join("a")).unwrap();
    let ones: u32 = got.iter().map(|b| b.count_ones()).sum();
    assert_eq!((ones, got[flip.offset as usize]), (1, 1 << flip.bit));
    d.crash();
    assert_eq!(d.read(&dir().join("a")).unwrap(), got, "the flip is in the durable content");
    assert_eq!(d.stats().bit_flips, 1);
}

/// Runs a fixed script of writes and crashes on a faulty disk and returns
/// everything observable.
fn script(seed: u64) -> (Vec<Vec<u8>>, SimDiskStats) {
    let faults = SimFaults { write_error: 0.1, sync_error: 0.1, torn_write: 0.5, bit_flip_on_crash: 0.3 };
    let d = disk(seed, faults);
    let mut seen = Vec::new();
    for round in 0..20u64 {
        let name = dir().join(format!("f{}", round % 3));
        let f = match d.open(&name) {
            Ok(f) => f,
            Err(_) => d.create(&name).unwrap(),
        };
        for i in 0..5 {
            let _ = f.write_at(format!("r{round}i{i};").as_bytes(), f.size().unwrap());
        }
        let _ = f.sync_data();
        let _ = d.sync_dir(&dir());
        let _ = f.write_at(b"tail", 3);
        if round % 4 == 3 {
            d.crash();
        }
        for p in d.list(&dir()).unwrap() {
            seen.push(d.read(&p).unwrap());
        }
    }
    (seen, d.stats())
}

#[test]
fn the_same_seed_gives_the_same_disk() {
    for seed in 0..20 {
        assert_eq!(script(seed), script(seed));
    }
    assert_ne!(script(1), script(2));
}
