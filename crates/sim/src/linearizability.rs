//! Linearizability checking of a recorded client history against a
//! sequential model.
//!
//! A history is linearizable if every operation can be given a single
//! instant between its invocation and its completion such that applying the
//! operations in that order to the model returns what the clients saw.
//! Operations that never completed (timed out) may take effect at any
//! instant after their invocation, or not at all.
//!
//! The search is Wing and Gong's, with Lowe's memoisation: a configuration
//! (set of operations linearized, model state) that has failed once is never
//! explored again (the WGL algorithm, as in Knossos and Porcupine). It is
//! exponential in the worst case, so histories over many independent keys
//! should be split with [`check_partitioned`]: linearizability is local
//! (Herlihy and Wing), so a history is linearizable iff each key's
//! sub-history is.
//!
//! A checker that cannot fail proves nothing: the tests below show that it
//! rejects each classic kind of violation.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Debug};
use std::hash::Hash;

/// A sequential specification: the object as if operations ran one at a time.
///
/// The state is hashed and compared to memoise the search, so keep it small
/// (for a key-value store checked per key, one key's value).
pub trait Model: Clone + Eq + Hash + Debug {
    /// An operation a client invokes.
    type Op: Clone + Debug;
    /// What an operation returns.
    type Ret: Clone + Eq + Debug;
    /// Applies `op` to the state and returns its result. Must be
    /// deterministic.
    fn step(&mut self, op: &Self::Op) -> Self::Ret;
}

/// One operation in a recorded history. Times are any monotonic logical
/// clock shared by all clients (the simulator's).
#[derive(Clone, Debug)]
pub struct Operation<M: Model> {
    /// Which client issued it (for reports only).
    pub client: u64,
    /// When the client invoked it.
    pub invoke: u64,
    /// When the client got the reply; `None` if it never did (timed out),
    /// so it may or may not have taken effect.
    pub complete: Option<u64>,
    /// The operation.
    pub op: M::Op,
    /// The reply; `Some` exactly when `complete` is.
    pub ret: Option<M::Ret>,
}

impl<M: Model> Operation<M> {
    /// An operation that returned `ret` at `complete`.
    pub fn completed(client: u64, invoke: u64, complete: u64, op: M::Op, ret: M::Ret) -> Self {
        Operation { client, invoke, complete: Some(complete), op, ret: Some(ret) }
    }

    /// An operation that never returned.
    pub fn pending(client: u64, invoke: u64, op: M::Op) -> Self {
        Operation { client, invoke, complete: None, op, ret: None }
    }
}

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The history itself is inconsistent (a bug in the recorder).
    Malformed {
        /// Index of the operation in the history.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No linearization exists.
    NotLinearizable {
        /// The longest sequence of operations (indices into the history)
        /// that could be linearized, in linearization order.
        linearized: Vec<usize>,
        /// The operations that could come next after `linearized` (invoked
        /// before the earliest completion among the rest), none of which
        /// the model allows there.
        stuck: Vec<usize>,
        /// A readable account: the partition, the tail of `linearized`, the
        /// model state after it, and what each stuck operation returned
        /// versus what the model would return.
        explanation: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Malformed { index, reason } => {
                write!(f, "malformed history: operation {index}: {reason}")
            }
            Violation::NotLinearizable { explanation, .. } => {
                write!(f, "history is not linearizable: {explanation}")
            }
        }
    }
}

impl std::error::Error for Violation {}

/// Checks that `history` is linearizable with respect to the model starting
/// in state `init`.
pub fn check<M: Model>(init: &M, history: &[Operation<M>]) -> Result<(), Violation> {
    validate(history)?;
    let all: Vec<usize> = (0..history.len()).collect();
    search(init, history, &all).map_err(|v| v.into_violation(history, None::<&()>))
}

/// Checks each partition of `history` on its own, from state `init`:
/// operations with equal `key(op)` form one partition. Correct when the
/// model's operations on different partitions commute and do not observe one
/// another, as for a key-value store partitioned by key; and much faster,
/// since the search is exponential in the concurrency of one partition only.
pub fn check_partitioned<M, K>(init: &M, history: &[Operation<M>], key: impl Fn(&M::Op) -> K) -> Result<(), Violation>
where
    M: Model,
    K: Ord + Debug,
{
    validate(history)?;
    let mut partitions: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.iter().enumerate() {
        partitions.entry(key(&op.op)).or_default().push(i);
    }
    for (k, ids) in &partitions {
        search(init, history, ids).map_err(|v| v.into_violation(history, Some(k)))?;
    }
    Ok(())
}

fn validate<M: Model>(history: &[Operation<M>]) -> Result<(), Violation> {
    for (index, op) in history.iter().enumerate() {
        let reason = match (op.complete, &op.ret) {
            (Some(c), Some(_)) if c < op.invoke => "completes before it is invoked",
            (Some(_), None) => "completed without a return value",
            (None, Some(_)) => "has a return value but never completed",
            _ => continue,
        };
        return Err(Violation::Malformed { index, reason });
    }
    Ok(())
}

/// A set of operations (by position in the partition), hashable for the cache.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// An invocation or a completion, as a node of the search's linked list.
struct Event {
    /// Position of the operation in the partition.
    op: usize,
    /// For a call, the list node of its return.
    ret_node: Option<usize>,
}

/// The best the search managed before failing, in partition positions.
struct Failure<M> {
    ids: Vec<usize>,
    best: Vec<usize>,
    state: M,
}

/// Wing–Gong search with Lowe's cache over the operations `ids` of `history`.
///
/// The events (calls and returns) are kept in a doubly linked list in time
/// order. The search walks the list from the front: at a call it tries to
/// linearize that operation now (removing its call and return from the
/// list); at a return it has failed to linearize that operation in time and
/// backtracks. Pending operations return "at infinity", so they never force
/// a backtrack and may stay unlinearized; the search succeeds once every
/// completed operation is linearized.
fn search<M: Model>(init: &M, history: &[Operation<M>], ids: &[usize]) -> Result<(), Failure<M>> {
    let n = ids.len();
    // Sort by time; at equal times calls come first, so operations that
    // touch at an instant count as concurrent (the lenient reading).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (j, &i) in ids.iter().enumerate() {
        order.push((history[i].invoke, false, j));
        order.push((history[i].complete.unwrap_or(u64::MAX), true, j));
    }
    order.sort_unstable();
    let mut node_of_call = vec![0; n];
    let mut node_of_ret = vec![0; n];
    for (node, &(_, is_ret, j)) in order.iter().enumerate() {
        if is_ret {
            node_of_ret[j] = node;
        } else {
            node_of_call[j] = node;
        }
    }
    let events: Vec<Event> =
        order.iter().map(|&(_, is_ret, j)| Event { op: j, ret_node: (!is_ret).then_some(node_of_ret[j]) }).collect();

    // Nodes 0..2n are events in time order; `head` and `end` are sentinels.
    let (head, end) = (2 * n, 2 * n + 1);
    let mut next = vec![0; 2 * n + 2];
    let mut prev = vec![0; 2 * n + 2];
    let chain: Vec<usize> = std::iter::once(head).chain(0..2 * n).chain(std::iter::once(end)).collect();
    for pair in chain.windows(2) {
        next[pair[0]] = pair[1];
        prev[pair[1]] = pair[0];
    }

    let unlink = |next: &mut [usize], prev: &mut [usize], k: usize| {
        next[prev[k]] = next[k];
        prev[next[k]] = prev[k];
    };
    let relink = |next: &mut [usize], prev: &mut [usize], k: usize| {
        next[prev[k]] = k;
        prev[next[k]] = k;
    };

    let completed = |j: usize| history[ids[j]].complete.is_some();
    let mut remaining = (0..n).filter(|&j| completed(j)).count();
    let mut state = init.clone();
    let mut linearized = Bitset::new(n);
    let mut cache: HashSet<(Bitset, M)> = HashSet::new();
    // (call node linearized, state before it)
    let mut stack: Vec<(usize, M)> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut best_state = init.clone();
    let mut entry = next[head];

    while remaining > 0 {
        // A completed operation's return is still in the list, so the walk
        // meets it before running off the end.
        debug_assert!(entry != end, "search ran past the last return");
        let event = &events[entry];
        let j = event.op;
        if let Some(ret_node) = event.ret_node {
            let mut after = state.clone();
            let got = after.step(&history[ids[j]].op);
            let allowed = history[ids[j]].ret.as_ref().is_none_or(|r| *r == got);
            if allowed {
                linearized.set(j);
                if cache.insert((linearized.clone(), after.clone())) {
                    stack.push((entry, std::mem::replace(&mut state, after)));
                    remaining -= usize::from(completed(j));
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, ret_node);
                    if stack.len() > best.len() {
                        best = stack.iter().map(|&(c, _)| events[c].op).collect();
                        best_state = state.clone();
                    }
                    entry = next[head];
                    continue;
                }
                linearized.clear(j);
            }
            entry = next[entry];
        } else {
            // Operation `j` had to take effect before it returned, and no
            // choice among the calls before this return allows it: undo the
            // most recent choice and try the call after it instead.
            let Some((call, before)) = stack.pop() else {
                return Err(Failure { ids: ids.to_vec(), best, state: best_state });
            };
            let k = events[call].op;
            linearized.clear(k);
            state = before;
            remaining += usize::from(completed(k));
            let ret_node = events[call].ret_node.expect("stack holds call nodes");
            relink(&mut next, &mut prev, ret_node);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

impl<M: Model> Failure<M> {
    fn into_violation<K: Debug>(self, history: &[Operation<M>], partition: Option<&K>) -> Violation {
        use std::fmt::Write;
        let done: HashSet<usize> = self.best.iter().copied().collect();
        let rest: Vec<usize> = (0..self.ids.len()).filter(|j| !done.contains(j)).collect();
        let deadline = rest.iter().filter_map(|&j| history[self.ids[j]].complete).min().unwrap_or(u64::MAX);
        let stuck: Vec<usize> = rest.iter().map(|&j| self.ids[j]).filter(|&i| history[i].invoke <= deadline).collect();
        let linearized: Vec<usize> = self.best.iter().map(|&j| self.ids[j]).collect();

        let mut text = String::new();
        if let Some(k) = partition {
            let _ = write!(text, "in partition {k:?}, ");
        }
        let _ = write!(text, "{} operation(s) linearized", linearized.len());
        let tail = linearized.len().saturating_sub(5);
        for &i in &linearized[tail..] {
            let _ = write!(text, "\n  ok    {}", describe(i, &history[i]));
        }
        let _ = write!(text, "\n  model state then: {:?}", self.state);
        for &i in &stuck {
            let expected = self.state.clone().step(&history[i].op);
            let _ = write!(text, "\n  stuck {} (model would return {expected:?})", describe(i, &history[i]));
        }
        Violation::NotLinearizable { linearized, stuck, explanation: text }
    }
}

fn describe<M: Model>(index: usize, op: &Operation<M>) -> String {
    let span = match op.complete {
        Some(c) => format!("[{}, {c}]", op.invoke),
        None => format!("[{}, never]", op.invoke),
    };
    format!("#{index} client {} {span}: {:?} -> {:?}", op.client, op.op, op.ret)
}

/// A key-value store operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp<K, V> {
    /// Read a key; returns [`KvRet::Value`].
    Get(K),
    /// Write a key; returns [`KvRet::Ok`].
    Put(K, V),
    /// Remove a key; returns [`KvRet::Ok`].
    Delete(K),
    /// Set `key` to `new` iff its value is `expected` (`None`: absent);
    /// returns [`KvRet::Swapped`].
    Cas {
        /// The key.
        key: K,
        /// The value the key must hold, or `None` for "absent".
        expected: Option<V>,
        /// The value to write if it does.
        new: V,
    },
}

impl<K, V> KvOp<K, V> {
    /// The key the operation touches.
    pub fn key(&self) -> &K {
        match self {
            KvOp::Get(k) | KvOp::Put(k, _) | KvOp::Delete(k) => k,
            KvOp::Cas { key, .. } => key,
        }
    }
}

/// What a key-value store operation returns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvRet<V> {
    /// A `Get`'s result: the value, or `None` if absent.
    Value(Option<V>),
    /// A `Put` or `Delete` took effect.
    Ok,
    /// Whether a `Cas` swapped.
    Swapped(bool),
}

/// Sequential model of a key-value store (linearizable registers, one per
/// key). Check it with [`check_kv`], which splits the history by key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kv<K: Ord, V> {
    map: BTreeMap<K, V>,
}

impl<K: Ord, V> Default for Kv<K, V> {
    fn default() -> Self {
        Kv { map: BTreeMap::new() }
    }
}

impl<K: Ord, V> Kv<K, V> {
    /// The empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<K, V> Model for Kv<K, V>
where
    K: Clone + Ord + Hash + Debug,
    V: Clone + Eq + Hash + Debug,
{
    type Op = KvOp<K, V>;
    type Ret = KvRet<V>;

    fn step(&mut self, op: &KvOp<K, V>) -> KvRet<V> {
        match op {
            KvOp::Get(k) => KvRet::Value(self.map.get(k).cloned()),
            KvOp::Put(k, v) => {
                self.map.insert(k.clone(), v.clone());
                KvRet::Ok
            }
            KvOp::Delete(k) => {
                self.map.remove(k);
                KvRet::Ok
            }
            KvOp::Cas { key, expected, new } => {
                let swap = self.map.get(key) == expected.as_ref();
                if swap {
                    self.map.insert(key.clone(), new.clone());
                }
                KvRet::Swapped(swap)
            }
        }
    }
}

/// Checks a key-value history from the empty store, each key on its own.
pub fn check_kv<K, V>(history: &[Operation<Kv<K, V>>]) -> Result<(), Violation>
where
    K: Clone + Ord + Hash + Debug,
    V: Clone + Eq + Hash + Debug,
{
    check_partitioned(&Kv::new(), history, |op| op.key().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    type Op = Operation<Kv<&'static str, u64>>;

    fn put(client: u64, span: (u64, u64), k: &'static str, v: u64) -> Op {
        Operation::completed(client, span.0, span.1, KvOp::Put(k, v), KvRet::Ok)
    }
    fn get(client: u64, span: (u64, u64), k: &'static str, v: Option<u64>) -> Op {
        Operation::completed(client, span.0, span.1, KvOp::Get(k), KvRet::Value(v))
    }
    fn cas(client: u64, span: (u64, u64), k: &'static str, from: Option<u64>, to: u64, ok: bool) -> Op {
        let op = KvOp::Cas { key: k, expected: from, new: to };
        Operation::completed(client, span.0, span.1, op, KvRet::Swapped(ok))
    }
    fn put_timed_out(client: u64, invoke: u64, k: &'static str, v: u64) -> Op {
        Operation::pending(client, invoke, KvOp::Put(k, v))
    }

    fn assert_linearizable(history: &[Op]) {
        if let Err(v) = check_kv(history) {
            panic!("expected linearizable, got: {v}");
        }
        // The unpartitioned search must agree.
        if let Err(v) = check(&Kv::new(), history) {
            panic!("unpartitioned check disagrees: {v}");
        }
    }

    fn assert_not_linearizable(history: &[Op]) -> Violation {
        let v = check_kv(history).expect_err("expected a violation");
        assert!(matches!(v, Violation::NotLinearizable { .. }), "{v}");
        check(&Kv::new(), history).expect_err("unpartitioned check disagrees");
        v
    }

    #[test]
    fn sequential_history_is_linearizable() {
        assert_linearizable(&[
            get(1, (0, 1), "x", None),
            put(1, (2, 3), "x", 1),
            get(2, (4, 5), "x", Some(1)),
            put(2, (6, 7), "x", 2),
            get(1, (8, 9), "x", Some(2)),
        ]);
    }

    #[test]
    fn overlapping_writes_may_be_read_in_either_order() {
        for last in [1, 2] {
            assert_linearizable(&[put(1, (0, 10), "x", 1), put(2, (0, 10), "x", 2), get(3, (11, 12), "x", Some(last))]);
        }
    }

    #[test]
    fn read_concurrent_with_a_write_sees_old_or_new_value() {
        for seen in [None, Some(1)] {
            assert_linearizable(&[put(1, (0, 10), "x", 1), get(2, (5, 6), "x", seen)]);
        }
    }

    #[test]
    fn operations_that_touch_at_an_instant_count_as_concurrent() {
        assert_linearizable(&[put(1, (0, 5), "x", 1), get(2, (5, 6), "x", None)]);
    }

    #[test]
    fn timed_out_write_may_have_taken_effect() {
        assert_linearizable(&[put_timed_out(1, 0, "x", 1), get(2, (5, 6), "x", Some(1))]);
    }

    #[test]
    fn timed_out_write_may_never_take_effect() {
        assert_linearizable(&[put_timed_out(1, 0, "x", 1), get(2, (5, 6), "x", None)]);
    }

    #[test]
    fn timed_out_write_may_take_effect_late() {
        assert_linearizable(&[put_timed_out(1, 0, "x", 1), get(2, (5, 6), "x", None), get(2, (50, 60), "x", Some(1))]);
    }

    #[test]
    fn timed_out_write_cannot_take_effect_before_its_invocation() {
        assert_not_linearizable(&[get(2, (0, 1), "x", Some(1)), put_timed_out(1, 5, "x", 1)]);
    }

    #[test]
    fn timed_out_write_once_seen_cannot_be_undone() {
        assert_not_linearizable(&[
            put_timed_out(1, 0, "x", 1),
            get(2, (5, 6), "x", Some(1)),
            get(2, (7, 8), "x", None),
        ]);
    }

    #[test]
    fn read_of_a_value_never_written_is_rejected() {
        let v = assert_not_linearizable(&[put(1, (0, 1), "x", 1), get(2, (2, 3), "x", Some(7))]);
        let Violation::NotLinearizable { stuck, linearized, .. } = &v else { unreachable!() };
        assert_eq!(linearized, &[0]);
        assert_eq!(stuck, &[1], "the read is the operation that cannot be placed");
        assert!(v.to_string().contains("Some(7)"), "{v}");
    }

    #[test]
    fn stale_read_after_a_completed_write_is_rejected() {
        assert_not_linearizable(&[put(1, (0, 1), "x", 1), put(1, (2, 3), "x", 2), get(2, (4, 5), "x", Some(1))]);
    }

    #[test]
    fn reads_that_observe_writes_in_contradictory_orders_are_rejected() {
        // Both writes overlap every read; client 3 sees 1 then 2, client 4
        // afterwards sees 2 then 1, which needs one write to happen twice.
        assert_not_linearizable(&[
            put(1, (0, 100), "x", 1),
            put(2, (0, 100), "x", 2),
            get(3, (10, 11), "x", Some(1)),
            get(3, (20, 21), "x", Some(2)),
            get(4, (30, 31), "x", Some(2)),
            get(4, (40, 41), "x", Some(1)),
        ]);
    }

    #[test]
    fn read_of_a_write_invoked_after_the_read_completed_is_rejected() {
        assert_not_linearizable(&[get(1, (0, 1), "x", Some(1)), put(2, (2, 3), "x", 1)]);
    }

    #[test]
    fn two_creates_cannot_both_succeed() {
        assert_linearizable(&[
            cas(1, (0, 10), "x", None, 1, true),
            cas(2, (0, 10), "x", None, 2, false),
            get(3, (11, 12), "x", Some(1)),
        ]);
        assert_not_linearizable(&[cas(1, (0, 10), "x", None, 1, true), cas(2, (0, 10), "x", None, 2, true)]);
    }

    #[test]
    fn violation_names_the_key_it_happened_on() {
        let v = assert_not_linearizable(&[
            put(1, (0, 1), "good", 1),
            put(1, (2, 3), "bad", 1),
            get(2, (4, 5), "good", Some(1)),
            get(2, (6, 7), "bad", None),
        ]);
        assert!(v.to_string().contains("\"bad\""), "{v}");
    }

    #[test]
    fn malformed_histories_are_refused() {
        let mut backwards = get(1, (5, 1), "x", None);
        assert_eq!(
            check_kv(std::slice::from_ref(&backwards)),
            Err(Violation::Malformed { index: 0, reason: "completes before it is invoked" })
        );
        backwards.ret = None;
        assert!(matches!(check_kv(&[backwards]), Err(Violation::Malformed { .. })));
        assert_eq!(check_kv::<&str, u64>(&[]), Ok(()));
    }

    /// A linearizable history made by running a real store: each operation
    /// takes effect at a random instant inside its span; some time out,
    /// having taken effect or not.
    fn random_history(seed: u64, clients: u64, ops_per_client: usize, keys: u64) -> Vec<Operation<Kv<u64, u64>>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut planned = Vec::new(); // (effect instant, whether it took effect, op)
        let mut next_value = 1;
        for client in 0..clients {
            let mut t = rng.u64(0..10);
            for _ in 0..ops_per_client {
                let key = rng.u64(0..keys);
                let op = match rng.u8(0..10) {
                    0..=4 => KvOp::Get(key),
                    5..=7 => KvOp::Put(key, next_value),
                    8 => KvOp::Delete(key),
                    _ => KvOp::Cas { key, expected: Some(rng.u64(1..next_value + 1)), new: next_value },
                };
                next_value += 1;
                let invoke = t;
                let effect = invoke + rng.u64(0..20);
                let complete = effect + rng.u64(0..20);
                let timed_out = rng.u8(0..100) < 3;
                let took_effect = !timed_out || rng.bool();
                let mut record = Operation::pending(client, invoke, op);
                if !timed_out {
                    record.complete = Some(complete);
                }
                planned.push((effect, took_effect, record));
                t = complete + rng.u64(1..10);
            }
        }
        planned.sort_by_key(|(effect, _, _)| *effect);
        let mut store = Kv::new();
        let mut history = Vec::new();
        for (_, took_effect, mut record) in planned {
            if took_effect {
                let ret = store.step(&record.op);
                if record.complete.is_some() {
                    record.ret = Some(ret);
                }
            }
            history.push(record);
        }
        history
    }

    #[test]
    fn three_hundred_operations_over_five_keys_check_quickly() {
        for seed in 0..5 {
            let history = random_history(seed, 5, 60, 5);
            let start = Instant::now();
            if let Err(v) = check_kv(&history) {
                panic!("seed {seed}: {v}");
            }
            assert!(start.elapsed() < Duration::from_secs(2), "seed {seed}: took {:?}", start.elapsed());

            // And one corrupted read in it is caught.
            let mut broken = history.clone();
            let read = broken
                .iter_mut()
                .find(|o| matches!(o.op, KvOp::Get(_)) && o.ret.is_some())
                .expect("some completed read");
            read.ret = Some(KvRet::Value(Some(u64::MAX)));
            assert!(check_kv(&broken).is_err(), "seed {seed}: corrupted read accepted");
        }
    }

    #[test]
    fn three_hundred_operations_on_one_key_check_quickly() {
        for seed in 0..5 {
            let history = random_history(seed, 5, 60, 1);
            let start = Instant::now();
            assert_eq!(check_kv(&history), Ok(()), "seed {seed}");
            assert!(start.elapsed() < Duration::from_secs(2), "seed {seed}: took {:?}", start.elapsed());
        }
    }

    #[test]
    fn unpartitioned_check_agrees_on_small_random_histories() {
        for seed in 0..20 {
            let history = random_history(seed, 3, 8, 2);
            assert_eq!(check(&Kv::new(), &history), Ok(()), "seed {seed}");
        }
    }
}
