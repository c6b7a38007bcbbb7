//! Property: the store agrees with a naive model that keeps a full copy of
//! the key space at every revision, for random histories of puts, deletes,
//! txns and compactions; and replay, snapshots and hashes stay consistent.

use std::collections::BTreeMap;

use proptest::prelude::*;
use synod_kv::pb::{
    CompactionRequest, DeleteRangeRequest, Event, KeyValue, PutRequest, RangeRequest, Request, RequestOp, TxnRequest,
};
use synod_kv::{Command, Config, KvError, KvState};

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    TxnPuts(Vec<(u8, u8)>),
    Compact(u8),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

/// Range end for a delete: 0 = single key, 5 = from key ("\0"), else key + n.
fn end(k: u8, e: u8) -> Vec<u8> {
    match e {
        0 => Vec::new(),
        5 => vec![0],
        n => vec![b'a' + k + n],
    }
}

fn in_range(k: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == start
    } else if end == [0] {
        k >= start
    } else {
        k >= start && k < end
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0..5u8, 0..3u8).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0..5u8, 0..6u8).prop_map(|(k, e)| Op::Delete(k, e)),
        2 => proptest::collection::btree_map(0..5u8, 0..3u8, 1..4).prop_map(|m| Op::TxnPuts(m.into_iter().collect())),
        1 => any::<u8>().prop_map(Op::Compact),
    ];
    proptest::collection::vec(op, 1..40)
}

/// The key space at every revision; index = revision.
struct Model {
    revs: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compacted: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.revs.len() as i64 - 1
    }

    fn write(&mut self, f: impl FnOnce(&mut BTreeMap<Vec<u8>, KeyValue>, i64) -> bool) {
        let rev = self.current() + 1;
        let mut next = self.revs.last().unwrap().clone();
        if f(&mut next, rev) {
            self.revs.push(next);
        }
    }

    fn put(map: &mut BTreeMap<Vec<u8>, KeyValue>, rev: i64, k: Vec<u8>, v: Vec<u8>) {
        let (create_revision, version) = match map.get(&k) {
            Some(old) => (old.create_revision, old.version + 1),
            None => (rev, 1),
        };
        map.insert(k.clone(), KeyValue { key: k, create_revision, mod_revision: rev, version, value: v, lease: 0 });
    }
}

fn command(op: &Op, current: i64) -> Command {
    match op {
        Op::Put(k, v) => Command::Put(PutRequest { key: key(*k), value: vec![*v], ..PutRequest::default() }),
        Op::Delete(k, e) => {
            Command::DeleteRange(DeleteRangeRequest { key: key(*k), range_end: end(*k, *e), prev_kv: true })
        }
        Op::TxnPuts(puts) => Command::Txn(TxnRequest {
            compare: vec![],
            success: puts
                .iter()
                .map(|(k, v)| RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key(*k),
                        value: vec![*v],
                        ..PutRequest::default()
                    })),
                })
                .collect(),
            failure: vec![],
        }),
        Op::Compact(r) => {
            Command::Compact(CompactionRequest { revision: (*r as i64) % (current + 1) + 1, physical: false })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_a_full_copy_per_revision_model(ops in ops(), cut in 0usize..40) {
        let mut state = KvState::default();
        let mut model = Model { revs: vec![BTreeMap::new(), BTreeMap::new()], compacted: -1 };
        let mut events: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        let mut snapshot_at_cut = None;

        for (i, op) in ops.iter().enumerate() {
            if i == cut {
                snapshot_at_cut = Some((state.snapshot(), i));
            }
            let cmd = command(op, state.revision());
            let result = state.apply(cmd);
            match op {
                Op::Put(k, v) => model.write(|m, rev| { Model::put(m, rev, key(*k), vec![*v]); true }),
                Op::TxnPuts(puts) => model.write(|m, rev| {
                    for (k, v) in puts { Model::put(m, rev, key(*k), vec![*v]); }
                    true
                }),
                Op::Delete(k, e) => model.write(|m, _| {
                    let (start, end) = (key(*k), end(*k, *e));
                    let before = m.len();
                    m.retain(|key, _| !in_range(key, &start, &end));
                    m.len() != before
                }),
                Op::Compact(_) => {
                    let Command::Compact(c) = command(op, model.current()) else { unreachable!() };
                    let want = if c.revision <= model.compacted {
                        Err(KvError::Compacted)
                    } else if c.revision > model.current() {
                        Err(KvError::FutureRevision)
                    } else {
                        model.compacted = c.revision;
                        Ok(())
                    };
                    prop_assert_eq!(result.as_ref().map(|_| ()).map_err(Clone::clone), want);
                }
            }
            prop_assert_eq!(state.revision(), model.current());
            if let Ok(applied) = result {
                if !applied.events.is_empty() {
                    events.insert(state.revision(), applied.events);
                }
            }
        }

        // Every revision reads as the model says, or is refused as compacted.
        for rev in 1..=model.current() {
            let req = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..RangeRequest::default() };
            let got = state.range(&req);
            if rev < model.compacted {
                prop_assert_eq!(got, Err(KvError::Compacted));
            } else {
                let got = got.unwrap();
                let want: Vec<KeyValue> = model.revs[rev as usize].values().cloned().collect();
                prop_assert_eq!(got.count, want.len() as i64);
                prop_assert_eq!(got.kvs, want, "revision {}", rev);
            }
        }

        // Watch replay from history equals what apply returned.
        let from = model.compacted + 1;
        let replay = state.events(from, model.current()).unwrap();
        let applied: Vec<Event> = events.range(from..).flat_map(|(_, e)| e.clone()).collect();
        prop_assert_eq!(replay, applied);

        // A replica restored from a mid-way snapshot catches up to the same state and hash.
        if let Some((bytes, at)) = snapshot_at_cut {
            let mut replica = KvState::restore(Config::default(), &bytes).unwrap();
            for op in &ops[at..] {
                let cmd = command(op, replica.revision());
                let _ = replica.apply(Command::from_bytes(&cmd.to_bytes()).unwrap());
            }
            prop_assert_eq!(replica.snapshot(), state.snapshot());
            prop_assert_eq!(replica.hash_kv(0).unwrap(), state.hash_kv(0).unwrap());
        }
    }
}
