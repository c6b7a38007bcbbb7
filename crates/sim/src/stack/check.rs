//! What the whole-stack simulator checks: the clients' history
//! ([`History`]) and the members' watch streams ([`Watcher`], [`Watches`]).

use crate::linearizability::{check_kv, Kv, KvOp, KvRet, Operation};
use std::collections::BTreeMap;
use synod_kv::pb::{Event, EventType};
use synod_paxos::NodeId;
use synod_server::state::watch_hub::Batch;

type Op = KvOp<String, String>;

/// The clients' operations, as they invoked them and learned their results.
#[derive(Default)]
pub struct History {
    ops: Vec<Operation<Kv<String, String>>>,
    /// The revision each completed write is at (`None` for reads and for
    /// writes that changed nothing).
    revisions: Vec<Option<i64>>,
    /// Reads that never answered: they had no effect and leave the history.
    dropped: Vec<bool>,
    completed: usize,
    /// The last value each key was seen to hold, for the next
    /// compare-and-swap to expect.
    seen: BTreeMap<String, Option<String>>,
}

impl History {
    /// A client invoked `op` at `now`; returns its index.
    pub fn invoke(&mut self, client: u64, now: u64, op: Op) -> usize {
        self.ops.push(Operation::pending(client, now, op));
        self.revisions.push(None);
        self.dropped.push(false);
        self.ops.len() - 1
    }

    /// Operation `i` returned `ret` at `now`, its write at `revision`.
    pub fn complete(&mut self, i: usize, now: u64, ret: KvRet<String>, revision: Option<i64>) {
        let op = &mut self.ops[i];
        match (&op.op, &ret) {
            (KvOp::Get(k), KvRet::Value(v)) => {
                self.seen.insert(k.clone(), v.clone());
            }
            (KvOp::Put(k, v), _) | (KvOp::Cas { key: k, new: v, .. }, KvRet::Swapped(true)) => {
                self.seen.insert(k.clone(), Some(v.clone()));
            }
            (KvOp::Delete(k), _) => {
                self.seen.insert(k.clone(), None);
            }
            _ => {}
        }
        op.complete = Some(now);
        op.ret = Some(ret);
        self.revisions[i] = revision;
        self.completed += 1;
    }

    /// Operation `i` will never answer: a write may or may not have taken
    /// effect; a read had none.
    pub fn unknown(&mut self, i: usize) {
        if matches!(self.ops[i].op, KvOp::Get(_)) {
            self.dropped[i] = true;
        }
    }

    /// Operations that completed.
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Writes whose outcome is unknown.
    pub fn unknown_writes(&self) -> usize {
        self.ops.iter().zip(&self.dropped).filter(|(o, d)| o.complete.is_none() && !**d).count()
    }

    /// What `key` was last seen to hold.
    pub fn last_value_seen(&self, key: &str) -> Option<String> {
        self.seen.get(key).cloned().flatten()
    }

    /// Whether the history is linearizable.
    pub fn check(&self) -> Result<(), String> {
        let kept: Vec<Operation<Kv<String, String>>> =
            self.ops.iter().zip(&self.dropped).filter(|(_, d)| !**d).map(|(o, _)| o.clone()).collect();
        check_kv(&kept).map_err(|v| format!("not linearizable: {v:?}"))
    }

    /// The completed writes and their revisions.
    fn acknowledged(&self) -> impl Iterator<Item = (&Op, i64)> {
        self.ops.iter().zip(&self.revisions).filter_map(|(o, r)| Some((&o.op, (*r)?)))
    }
}

/// One revision's events, as a watcher sees them: type, key, value.
type Changes = Vec<(i32, Vec<u8>, Vec<u8>)>;

/// Every revision any member's watch stream handed out, with its events:
/// the same revision must carry the same events everywhere.
#[derive(Default)]
pub struct Watches {
    revisions: BTreeMap<i64, Changes>,
}

impl Watches {
    /// Every acknowledged write is the event at its revision.
    pub fn check_acknowledged(&self, history: &History) -> Result<(), String> {
        for (op, revision) in history.acknowledged() {
            let Some(changes) = self.revisions.get(&revision) else {
                return Err(format!(
                    "{op:?} was acknowledged at revision {revision}, which no watch stream handed out"
                ));
            };
            let wanted = match op {
                KvOp::Put(k, v) | KvOp::Cas { key: k, new: v, .. } => {
                    (EventType::Put as i32, k.as_bytes().to_vec(), v.as_bytes().to_vec())
                }
                KvOp::Delete(k) => (EventType::Delete as i32, k.as_bytes().to_vec(), Vec::new()),
                KvOp::Get(_) => continue,
            };
            if !changes.contains(&wanted) {
                return Err(format!(
                    "{op:?} was acknowledged at revision {revision}, but watchers saw {}",
                    show(changes)
                ));
            }
        }
        Ok(())
    }
}

/// One member's watch stream over one life of the member: a watcher of
/// every key from the revision after the store's at its start.
pub struct Watcher {
    node: NodeId,
    next: i64,
}

impl Watcher {
    /// A watcher on member `node`, whose store was at `revision`.
    pub fn new(node: NodeId, revision: i64) -> Watcher {
        Watcher { node, next: revision + 1 }
    }

    /// The hub handed out `batch`: it must start where the last ended,
    /// hold every revision it claims once, in order, and agree with what
    /// every other member handed out. Returns the events checked.
    pub fn batch(&mut self, batch: &Batch, all: &mut Watches) -> Result<u64, String> {
        let node = self.node;
        if batch.to < batch.from {
            return Ok(0);
        }
        if batch.from != self.next {
            return Err(format!(
                "member {node}'s watch stream went from revision {} to a batch of {}..={}",
                self.next - 1,
                batch.from,
                batch.to
            ));
        }
        let mut by_revision: BTreeMap<i64, Changes> = BTreeMap::new();
        let mut last = batch.from;
        for e in &batch.events {
            let kv = e.kv.as_ref().ok_or_else(|| format!("member {node}: an event without a key-value"))?;
            let rev = kv.mod_revision;
            if rev < last || rev > batch.to {
                return Err(format!(
                    "member {node}'s watch batch {}..={} has an event at revision {rev} after one at {last}",
                    batch.from, batch.to
                ));
            }
            last = rev;
            by_revision.entry(rev).or_default().push(change(e));
        }
        for rev in batch.from..=batch.to {
            let Some(changes) = by_revision.remove(&rev) else {
                return Err(format!(
                    "member {node}'s watch stream skipped revision {rev} (batch {}..={})",
                    batch.from, batch.to
                ));
            };
            match all.revisions.get(&rev) {
                Some(seen) if *seen != changes => {
                    return Err(format!(
                        "revision {rev}: member {node} handed out {}, another member {}",
                        show(&changes),
                        show(seen)
                    ));
                }
                Some(_) => {}
                None => {
                    all.revisions.insert(rev, changes);
                }
            }
        }
        self.next = batch.to + 1;
        Ok(batch.events.len() as u64)
    }
}

fn change(e: &Event) -> (i32, Vec<u8>, Vec<u8>) {
    let kv = e.kv.as_ref().expect("checked by the caller");
    (e.r#type, kv.key.clone(), kv.value.clone())
}

fn show(changes: &Changes) -> String {
    let parts: Vec<String> = changes
        .iter()
        .map(|(t, k, v)| {
            let kind = if *t == EventType::Delete as i32 { "DELETE" } else { "PUT" };
            format!("{kind} {}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
