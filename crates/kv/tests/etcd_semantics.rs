//! Specification of the state machine, case by case against etcd v3.5's
//! behaviour. Each test names the property it pins down.

use synod_kv::pb::{
    CompactionRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventType, KeyValue,
    LeaseGrantRequest, LeaseRevokeRequest, OpResponse, PutRequest, RangeRequest, RangeResponse, Request, RequestOp,
    SortOrder, SortTarget, TargetUnion, TxnRequest, TxnResponse,
};
use synod_kv::{Applied, Code, Command, Config, KvError, KvState, Response};

// ---- helpers -------------------------------------------------------------

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() }
}

fn put(s: &mut KvState, key: &str, value: &str) -> Applied {
    s.apply(Command::Put(put_req(key, value))).expect("put")
}

fn put_lease(s: &mut KvState, key: &str, value: &str, lease: i64) -> Applied {
    s.apply(Command::Put(PutRequest { lease, ..put_req(key, value) })).expect("put with lease")
}

fn del_req(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: key.into(), range_end: end.into(), prev_kv: true }
}

fn del(s: &mut KvState, key: &str, end: &str) -> Applied {
    s.apply(Command::DeleteRange(del_req(key, end))).expect("delete")
}

fn range_req(key: &str, end: &str) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: end.into(), ..RangeRequest::default() }
}

fn get(s: &KvState, key: &str) -> Option<KeyValue> {
    s.range(&range_req(key, "")).expect("get").kvs.pop()
}

fn get_at(s: &KvState, key: &str, revision: i64) -> Result<Option<KeyValue>, KvError> {
    Ok(s.range(&RangeRequest { revision, ..range_req(key, "") })?.kvs.pop())
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

fn op(request: Request) -> RequestOp {
    RequestOp { request: Some(request) }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    op(Request::RequestPut(put_req(key, value)))
}

fn op_get(key: &str) -> RequestOp {
    op(Request::RequestRange(range_req(key, "")))
}

fn op_del(key: &str, end: &str) -> RequestOp {
    op(Request::RequestDeleteRange(del_req(key, end)))
}

fn op_txn(txn: TxnRequest) -> RequestOp {
    op(Request::RequestTxn(txn))
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { compare, success, failure }
}

fn cmp(key: &str, end: &str, target: CompareTarget, result: CompareResult, given: TargetUnion) -> Compare {
    Compare {
        result: result.into(),
        target: target.into(),
        key: key.into(),
        range_end: end.into(),
        target_union: Some(given),
    }
}

fn apply_txn(s: &mut KvState, t: TxnRequest) -> Result<TxnResponse, KvError> {
    match s.apply(Command::Txn(t))?.response {
        Response::Txn(r) => Ok(r),
        other => panic!("not a txn response: {other:?}"),
    }
}

fn grant(s: &mut KvState, id: i64, ttl: i64) -> Result<(i64, i64), KvError> {
    match s.apply(Command::LeaseGrant(LeaseGrantRequest { ttl, id }))?.response {
        Response::LeaseGrant(r) => Ok((r.id, r.ttl)),
        other => panic!("not a grant response: {other:?}"),
    }
}

fn revoke(s: &mut KvState, id: i64) -> Result<Applied, KvError> {
    s.apply(Command::LeaseRevoke(LeaseRevokeRequest { id }))
}

fn compact(s: &mut KvState, revision: i64) -> Result<Applied, KvError> {
    s.apply(Command::Compact(CompactionRequest { revision, physical: false }))
}

// ---- revisions -------------------------------------------------------------

#[test]
fn empty_store_is_at_revision_one_and_first_put_gets_two() {
    let mut s = KvState::default();
    assert_eq!(s.revision(), 1);
    assert_eq!(s.range(&range_req("a", "")).unwrap().header.unwrap().revision, 1);
    let applied = put(&mut s, "a", "1");
    assert_eq!(applied.response.revision(), 2);
    assert_eq!(s.revision(), 2);
}

#[test]
fn revision_advances_once_per_request_that_changes_something() {
    // (description, command, revision advanced?)
    let mut s = KvState::default();
    put(&mut s, "a", "1");
    put(&mut s, "b", "1");
    let cases: Vec<(&str, Command, bool)> = vec![
        ("put of the same value", Command::Put(put_req("a", "1")), true),
        ("delete of a missing key", Command::DeleteRange(del_req("zz", "")), false),
        ("delete of a missing range", Command::DeleteRange(del_req("x", "y")), false),
        ("delete of two keys", Command::DeleteRange(del_req("a", "c")), true),
        (
            "txn with three puts",
            Command::Txn(txn(vec![], vec![op_put("a", "1"), op_put("b", "2"), op_put("c", "3")], vec![])),
            true,
        ),
        ("txn with reads only", Command::Txn(txn(vec![], vec![op_get("a"), op_get("b")], vec![])), false),
        ("txn deleting a missing key", Command::Txn(txn(vec![], vec![op_del("zz", "")], vec![])), false),
        ("txn whose taken branch is empty", Command::Txn(txn(vec![], vec![], vec![op_put("a", "x")])), false),
        ("compaction", Command::Compact(CompactionRequest { revision: 2, physical: false }), false),
        ("lease grant", Command::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 7 }), false),
        ("revoke of a lease without keys", Command::LeaseRevoke(LeaseRevokeRequest { id: 7 }), false),
    ];
    for (what, command, advances) in cases {
        let before = s.revision();
        let applied = s.apply(command).unwrap_or_else(|e| panic!("{what}: {e}"));
        let expected = if advances { before + 1 } else { before };
        assert_eq!(s.revision(), expected, "{what}");
        assert_eq!(applied.response.revision(), expected, "{what}: header revision");
        assert_eq!(applied.events.is_empty(), !advances, "{what}: events");
    }
}

// ---- versions --------------------------------------------------------------

#[test]
fn versions_count_puts_and_restart_after_delete() {
    let mut s = KvState::default();
    put(&mut s, "k", "a"); // rev 2
    put(&mut s, "k", "b"); // rev 3
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));

    del(&mut s, "k", ""); // rev 4
    assert_eq!(get(&s, "k"), None);

    put(&mut s, "k", "c"); // rev 5: a new generation
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    assert_eq!(kv.value, b"c");

    // History keeps the old generation.
    let old = get_at(&s, "k", 3).unwrap().unwrap();
    assert_eq!((old.create_revision, old.mod_revision, old.version, old.value), (2, 3, 2, b"b".to_vec()));
    assert_eq!(get_at(&s, "k", 4).unwrap(), None);
    assert_eq!(get_at(&s, "k", 1).unwrap(), None);
}

// ---- put -------------------------------------------------------------------

#[test]
fn put_returns_prev_kv_only_when_asked_and_present() {
    let mut s = KvState::default();
    let with_prev = |key: &str, value: &str| PutRequest { prev_kv: true, ..put_req(key, value) };
    let first = s.apply(Command::Put(with_prev("k", "1"))).unwrap();
    let Response::Put(r) = first.response else { panic!() };
    assert_eq!(r.prev_kv, None, "no previous value");

    let second = s.apply(Command::Put(with_prev("k", "2"))).unwrap();
    let Response::Put(r) = second.response else { panic!() };
    let prev = r.prev_kv.unwrap();
    assert_eq!((prev.value, prev.mod_revision, prev.version), (b"1".to_vec(), 2, 1));

    let third = put(&mut s, "k", "3");
    let Response::Put(r) = third.response else { panic!() };
    assert_eq!(r.prev_kv, None, "not asked for");
}

#[test]
fn put_ignore_value_and_ignore_lease_keep_the_current_ones() {
    let mut s = KvState::default();
    grant(&mut s, 1, 60).unwrap();
    put_lease(&mut s, "k", "v", 1);

    s.apply(Command::Put(PutRequest {
        key: "k".into(),
        ignore_value: true,
        ignore_lease: true,
        ..PutRequest::default()
    }))
    .unwrap();
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.value, kv.lease, kv.version), (b"v".to_vec(), 1, 2));

    s.apply(Command::Put(PutRequest { key: "k".into(), ignore_value: true, ..PutRequest::default() })).unwrap();
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.value, kv.lease), (b"v".to_vec(), 0), "lease 0 detaches");
    assert!(s.lease(1).unwrap().keys.is_empty());
}

#[test]
fn put_is_refused_with_etcds_errors() {
    let mut s = KvState::default();
    put(&mut s, "exists", "v");
    let cases: Vec<(&str, PutRequest, KvError)> = vec![
        ("empty key", put_req("", "v"), KvError::EmptyKey),
        (
            "ignore_value with a value",
            PutRequest { ignore_value: true, ..put_req("exists", "v") },
            KvError::ValueProvided,
        ),
        (
            "ignore_lease with a lease",
            PutRequest { ignore_lease: true, lease: 5, ..put_req("exists", "") },
            KvError::LeaseProvided,
        ),
        (
            "ignore_value on a missing key",
            PutRequest { ignore_value: true, ..put_req("missing", "") },
            KvError::KeyNotFound,
        ),
        (
            "ignore_lease on a missing key",
            PutRequest { ignore_lease: true, ..put_req("missing", "v") },
            KvError::KeyNotFound,
        ),
        ("unknown lease", PutRequest { lease: 42, ..put_req("k", "v") }, KvError::LeaseNotFound),
        (
            "unknown lease is checked before ignore_value",
            PutRequest { lease: 42, ignore_value: true, ..put_req("missing", "") },
            KvError::LeaseNotFound,
        ),
    ];
    for (what, req, err) in cases {
        let before = s.clone();
        assert_eq!(s.apply(Command::Put(req)), Err(err), "{what}");
        assert_eq!(s, before, "{what}: a refused put changes nothing");
    }
    assert_eq!(KvError::KeyNotFound.code(), Code::InvalidArgument);
    assert_eq!(KvError::LeaseNotFound.to_string(), "etcdserver: requested lease not found");
}

// ---- range -----------------------------------------------------------------

/// a..d with values d, c2, b, a; b updated last.
/// create: a=2 b=3 c=4 d=5; mod: a=2 b=6 c=4 d=5; version: b=2, others 1.
fn abcd() -> KvState {
    let mut s = KvState::default();
    put(&mut s, "a", "d");
    put(&mut s, "b", "c");
    put(&mut s, "c", "b");
    put(&mut s, "d", "a");
    put(&mut s, "b", "c2");
    s
}

#[test]
fn range_selects_single_key_interval_and_from_key() {
    let s = abcd();
    let cases = [
        ("single key", "b", "", vec!["b"]),
        ("missing single key", "bb", "", vec![]),
        ("half-open interval", "b", "d", vec!["b", "c"]),
        ("prefix-style interval", "a", "c", vec!["a", "b"]),
        ("end before key is empty", "c", "a", vec![]),
        ("end equal to key is empty", "c", "c", vec![]),
        ("from key with \\0", "c", "\0", vec!["c", "d"]),
        ("all keys with \\0 \\0", "\0", "\0", vec!["a", "b", "c", "d"]),
    ];
    for (what, key, end, want) in cases {
        let resp = s.range(&range_req(key, end)).unwrap();
        assert_eq!(keys(&resp), want, "{what}");
        assert_eq!(resp.count, want.len() as i64, "{what}");
        assert_eq!(resp.header.unwrap().revision, 6, "{what}");
    }
}

#[test]
fn range_limit_count_and_more_as_etcd_computes_them() {
    let s = abcd();
    // (description, request, keys, more, count)
    let all = || range_req("a", "\0");
    let cases: Vec<(&str, RangeRequest, Vec<&str>, bool, i64)> = vec![
        ("no limit", all(), vec!["a", "b", "c", "d"], false, 4),
        ("limit below count", RangeRequest { limit: 2, ..all() }, vec!["a", "b"], true, 4),
        ("limit equal to count", RangeRequest { limit: 4, ..all() }, vec!["a", "b", "c", "d"], false, 4),
        ("limit above count", RangeRequest { limit: 9, ..all() }, vec!["a", "b", "c", "d"], false, 4),
        ("negative limit means none", RangeRequest { limit: -1, ..all() }, vec!["a", "b", "c", "d"], false, 4),
        (
            "limit after sort",
            RangeRequest {
                limit: 2,
                sort_target: SortTarget::Mod.into(),
                sort_order: SortOrder::Descend.into(),
                ..all()
            },
            vec!["b", "d"],
            true,
            4,
        ),
        ("count ignores revision filters", RangeRequest { min_mod_revision: 5, ..all() }, vec!["b", "d"], false, 4),
        ("more after filtering", RangeRequest { min_mod_revision: 5, limit: 1, ..all() }, vec!["b"], true, 4),
        ("max create revision", RangeRequest { max_create_revision: 3, ..all() }, vec!["a", "b"], false, 4),
        ("min create revision", RangeRequest { min_create_revision: 4, ..all() }, vec!["c", "d"], false, 4),
        ("max mod revision", RangeRequest { max_mod_revision: 4, ..all() }, vec!["a", "c"], false, 4),
        ("count only", RangeRequest { count_only: true, limit: 1, ..all() }, vec![], false, 4),
        ("historical count", RangeRequest { revision: 3, ..all() }, vec!["a", "b"], false, 2),
    ];
    for (what, req, want, more, count) in cases {
        let resp = s.range(&req).unwrap();
        assert_eq!(keys(&resp), want, "{what}");
        assert_eq!((resp.more, resp.count), (more, count), "{what}: (more, count)");
    }
}

#[test]
fn range_sorts_by_each_target_with_etcds_defaults() {
    let s = abcd();
    use SortOrder::{Ascend, Descend, None};
    use SortTarget::{Create, Key, Mod, Value, Version};
    let cases = [
        (Key, None, vec!["a", "b", "c", "d"]),
        (Key, Ascend, vec!["a", "b", "c", "d"]),
        (Key, Descend, vec!["d", "c", "b", "a"]),
        (Value, None, vec!["d", "c", "b", "a"]), // another target with no order sorts ascending
        (Value, Ascend, vec!["d", "c", "b", "a"]),
        (Value, Descend, vec!["a", "b", "c", "d"]),
        (Version, Ascend, vec!["a", "c", "d", "b"]), // ties keep key order
        (Version, Descend, vec!["b", "a", "c", "d"]),
        (Create, Descend, vec!["d", "c", "b", "a"]),
        (Mod, None, vec!["a", "c", "d", "b"]),
        (Mod, Descend, vec!["b", "d", "c", "a"]),
    ];
    for (target, order, want) in cases {
        let req = RangeRequest { sort_target: target.into(), sort_order: order.into(), ..range_req("a", "\0") };
        assert_eq!(keys(&s.range(&req).unwrap()), want, "{target:?} {order:?}");
    }
    let bad = RangeRequest { sort_order: 7, ..range_req("a", "") };
    assert_eq!(s.range(&bad), Err(KvError::InvalidSortOption));
    let bad = RangeRequest { sort_target: 9, ..range_req("a", "") };
    assert_eq!(s.range(&bad), Err(KvError::InvalidSortOption));
    assert_eq!(s.range(&range_req("", "")), Err(KvError::EmptyKey));
}

#[test]
fn range_keys_only_drops_values() {
    let s = abcd();
    let resp = s.range(&RangeRequest { keys_only: true, ..range_req("a", "c") }).unwrap();
    assert_eq!(keys(&resp), ["a", "b"]);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty() && kv.version > 0));
}

#[test]
fn range_at_a_revision_reads_history_and_refuses_future_and_compacted() {
    let mut s = abcd();
    let b_at = |s: &KvState, rev| get_at(s, "b", rev).map(|kv| kv.map(|kv| kv.value));
    assert_eq!(b_at(&s, 5), Ok(Some(b"c".to_vec())));
    assert_eq!(b_at(&s, 6), Ok(Some(b"c2".to_vec())));
    assert_eq!(b_at(&s, 0), Ok(Some(b"c2".to_vec())), "0 means current");
    assert_eq!(b_at(&s, 7), Err(KvError::FutureRevision));
    // The header always carries the current revision.
    let resp = s.range(&RangeRequest { revision: 3, ..range_req("a", "\0") }).unwrap();
    assert_eq!(resp.header.unwrap().revision, 6);

    compact(&mut s, 5).unwrap();
    assert_eq!(b_at(&s, 4), Err(KvError::Compacted));
    assert_eq!(b_at(&s, 5), Ok(Some(b"c".to_vec())), "the compacted revision itself stays readable");
    assert_eq!(KvError::Compacted.code(), Code::OutOfRange);
}

// ---- delete range ----------------------------------------------------------

#[test]
fn delete_range_reports_deleted_count_and_prev_kvs() {
    // (description, key, range_end, deleted keys)
    let cases = [
        ("single key", "b", "", vec!["b"]),
        ("missing key", "bb", "", vec![]),
        ("interval", "b", "d", vec!["b", "c"]),
        ("from key", "c", "\0", vec!["c", "d"]),
        ("everything", "\0", "\0", vec!["a", "b", "c", "d"]),
    ];
    for (what, key, end, want) in cases {
        let mut s = abcd();
        let applied = del(&mut s, key, end);
        let Response::DeleteRange(r) = applied.response else { panic!() };
        assert_eq!(r.deleted, want.len() as i64, "{what}");
        let prev: Vec<_> = r.prev_kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect();
        assert_eq!(prev, want, "{what}");
        for k in want {
            assert_eq!(get(&s, k), None, "{what}: {k} deleted");
        }
    }
    let mut s = abcd();
    let applied = s.apply(Command::DeleteRange(DeleteRangeRequest { prev_kv: false, ..del_req("a", "c") })).unwrap();
    let Response::DeleteRange(r) = applied.response else { panic!() };
    assert_eq!((r.deleted, r.prev_kvs.len()), (2, 0), "prev_kvs only when asked");
    assert_eq!(s.apply(Command::DeleteRange(del_req("", ""))), Err(KvError::EmptyKey));
}

// ---- txn -------------------------------------------------------------------

#[test]
fn txn_compares_every_target_and_result() {
    let mut s = KvState::default();
    put(&mut s, "a", "1"); // rev 2
    put(&mut s, "a", "2"); // rev 3: a = {create 2, mod 3, version 2, value "2"}
    put(&mut s, "b", "1"); // rev 4: b = {create 4, mod 4, version 1}
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let v = |s: &str| TargetUnion::Value(s.into());
    let cases: Vec<(&str, Compare, bool)> = vec![
        ("value equal", cmp("a", "", Value, Equal, v("2")), true),
        ("value equal, other", cmp("a", "", Value, Equal, v("1")), false),
        ("value greater", cmp("a", "", Value, Greater, v("1")), true),
        ("value less", cmp("a", "", Value, Less, v("3")), true),
        ("value not equal", cmp("a", "", Value, NotEqual, v("2")), false),
        ("version equal", cmp("a", "", Version, Equal, TargetUnion::Version(2)), true),
        ("version greater", cmp("a", "", Version, Greater, TargetUnion::Version(1)), true),
        ("version less", cmp("a", "", Version, Less, TargetUnion::Version(2)), false),
        ("create equal", cmp("a", "", Create, Equal, TargetUnion::CreateRevision(2)), true),
        ("mod equal", cmp("a", "", Mod, Equal, TargetUnion::ModRevision(3)), true),
        ("mod greater", cmp("a", "", Mod, Greater, TargetUnion::ModRevision(3)), false),
        ("mod less", cmp("a", "", Mod, Less, TargetUnion::ModRevision(4)), true),
        ("lease equal", cmp("a", "", Lease, Equal, TargetUnion::Lease(0)), true),
        ("lease not equal", cmp("a", "", Lease, NotEqual, TargetUnion::Lease(0)), false),
        // A missing key compares as all zeroes ...
        ("missing: version 0", cmp("zz", "", Version, Equal, TargetUnion::Version(0)), true),
        ("missing: create 0", cmp("zz", "", Create, Equal, TargetUnion::CreateRevision(0)), true),
        ("missing: mod < 1", cmp("zz", "", Mod, Less, TargetUnion::ModRevision(1)), true),
        // ... but a value compare on a missing key always fails.
        ("missing: value equal empty", cmp("zz", "", Value, Equal, v("")), false),
        ("missing: value not equal", cmp("zz", "", Value, NotEqual, v("x")), false),
        // A range compare must hold for every key in the range.
        ("range: all versions > 0", cmp("a", "c", Version, Greater, TargetUnion::Version(0)), true),
        ("range: all versions == 2", cmp("a", "c", Version, Equal, TargetUnion::Version(2)), false),
        ("range from key: all created >= 2", cmp("a", "\0", Create, Greater, TargetUnion::CreateRevision(1)), true),
        ("empty range: version 0", cmp("x", "y", Version, Equal, TargetUnion::Version(0)), true),
    ];
    for (what, compare, holds) in cases {
        let resp = apply_txn(&mut s, txn(vec![compare], vec![], vec![])).unwrap();
        assert_eq!(resp.succeeded, holds, "{what}");
    }
    // All compares must hold.
    let both = vec![cmp("a", "", Value, Equal, v("2")), cmp("b", "", Version, Equal, TargetUnion::Version(2))];
    assert!(!apply_txn(&mut s, txn(both, vec![], vec![])).unwrap().succeeded);
    assert_eq!(s.revision(), 4, "compares alone never write");
}

#[test]
fn txn_runs_the_branch_its_compares_choose_at_one_revision() {
    let mut s = KvState::default();
    put(&mut s, "k", "old"); // rev 2
    let is_old = || cmp("k", "", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value("old".into()));

    let resp = apply_txn(
        &mut s,
        txn(vec![is_old()], vec![op_put("k", "new"), op_put("x", "1"), op_get("k")], vec![op_put("failed", "1")]),
    )
    .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    assert_eq!(s.revision(), 3, "three ops, one revision");
    assert_eq!(get(&s, "failed"), None);
    assert_eq!((get(&s, "k").unwrap().mod_revision, get(&s, "x").unwrap().mod_revision), (3, 3));
    // A read in the txn sees the txn's earlier writes.
    let Some(OpResponse::ResponseRange(r)) = &resp.responses[2].response else { panic!() };
    assert_eq!(r.kvs[0].value, b"new");
    assert_eq!(r.header.as_ref().unwrap().revision, 3);
    let Some(OpResponse::ResponsePut(p)) = &resp.responses[0].response else { panic!() };
    assert_eq!(p.header.as_ref().unwrap().revision, 3);

    let resp = apply_txn(
        &mut s,
        txn(vec![is_old()], vec![op_put("k", "newer")], vec![op_put("failed", "1"), op_del("x", "")]),
    )
    .unwrap();
    assert!(!resp.succeeded);
    assert_eq!(get(&s, "k").unwrap().value, b"new");
    assert_eq!(get(&s, "failed").unwrap().mod_revision, 4);
    assert_eq!(get(&s, "x"), None);
    let Some(OpResponse::ResponseDeleteRange(d)) = &resp.responses[1].response else { panic!() };
    assert_eq!(d.deleted, 1);
}

#[test]
fn nested_txn_compares_see_the_state_before_the_outer_txn() {
    let mut s = KvState::default();
    put(&mut s, "k", "1"); // rev 2
    let k_is = |v: &str| cmp("k", "", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(v.into()));
    // The outer txn changes k first; the nested compare still sees "1".
    let inner = txn(vec![k_is("1")], vec![op_put("inner", "saw-old"), op_get("k")], vec![op_put("inner", "saw-new")]);
    let outer = txn(vec![], vec![op_put("k", "2"), op_txn(inner)], vec![]);
    let resp = apply_txn(&mut s, outer).unwrap();
    assert_eq!(get(&s, "inner").unwrap().value, b"saw-old");
    assert_eq!(s.revision(), 3);
    let Some(OpResponse::ResponseTxn(nested)) = &resp.responses[1].response else { panic!() };
    assert!(nested.succeeded);
    assert_eq!(nested.header.as_ref().unwrap().revision, 0, "nested headers are left empty, as in etcd");
    let Some(OpResponse::ResponseRange(r)) = &nested.responses[1].response else { panic!() };
    assert_eq!(r.kvs[0].value, b"2", "but its reads see the outer writes");
}

#[test]
fn txn_refuses_keys_written_twice_as_etcd_does() {
    let t = |success: Vec<RequestOp>| txn(vec![], success, vec![]);
    let nested = |success: Vec<RequestOp>, failure: Vec<RequestOp>| op_txn(txn(vec![], success, failure));
    let cases: Vec<(&str, TxnRequest, bool)> = vec![
        ("put, put", t(vec![op_put("a", "1"), op_put("a", "2")]), false),
        ("put, delete", t(vec![op_put("a", "1"), op_del("a", "")]), false),
        ("delete, put", t(vec![op_del("a", ""), op_put("a", "1")]), false),
        ("delete range covering a put", t(vec![op_del("a", "c"), op_put("b", "1")]), false),
        ("delete range ending before the put", t(vec![op_del("a", "b"), op_put("b", "1")]), true),
        // etcd compares the end "\0" literally, so from-key deletes overlap nothing.
        ("from-key delete and a put", t(vec![op_del("a", "\0"), op_put("b", "1")]), true),
        ("delete, delete", t(vec![op_del("a", ""), op_del("a", "c")]), true),
        ("put and nested put", t(vec![op_put("a", "1"), nested(vec![op_put("a", "2")], vec![])]), false),
        ("nested delete and put", t(vec![nested(vec![op_del("a", "")], vec![]), op_put("a", "1")]), false),
        (
            "two nested puts",
            t(vec![nested(vec![op_put("a", "1")], vec![]), nested(vec![op_put("a", "2")], vec![])]),
            false,
        ),
        (
            "nested then and else put the same key",
            t(vec![nested(vec![op_put("a", "1")], vec![op_put("a", "2")])]),
            true,
        ),
        ("success and failure put the same key", txn(vec![], vec![op_put("a", "1")], vec![op_put("a", "2")]), true),
        ("failure branch puts twice", txn(vec![], vec![], vec![op_put("a", "1"), op_put("a", "2")]), false),
    ];
    for (what, request, ok) in cases {
        let mut s = KvState::default();
        let got = apply_txn(&mut s, request.clone());
        assert_eq!(got.is_ok(), ok, "{what}: {got:?}");
        assert_eq!(synod_kv::validate_txn(&request, 128).is_ok(), ok, "{what}: validate_txn");
        if !ok {
            assert_eq!(got, Err(KvError::DuplicateKey), "{what}");
            assert_eq!(s.revision(), 1, "{what}: nothing applied");
        }
    }
}

#[test]
fn txn_size_and_op_validation() {
    let mut s = KvState::new(Config { max_txn_ops: 3, ..Config::default() });
    let puts = |n: usize| (0..n).map(|i| op_put(&format!("k{i}"), "v")).collect::<Vec<_>>();
    let version0 = |k: &str| cmp(k, "", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0));
    let cases: Vec<(&str, TxnRequest, Result<(), KvError>)> = vec![
        ("ops at the limit", txn(vec![], puts(3), vec![]), Ok(())),
        ("too many success ops", txn(vec![], puts(4), vec![]), Err(KvError::TooManyOps)),
        ("too many failure ops", txn(vec![], vec![], puts(4)), Err(KvError::TooManyOps)),
        (
            "too many compares",
            txn(vec![version0("a"), version0("b"), version0("c"), version0("d")], vec![], vec![]),
            Err(KvError::TooManyOps),
        ),
        // A nested txn gets the budget its parent leaves: 3 - 2 = 1.
        (
            "nested txn over the remaining budget",
            txn(vec![], vec![op_put("x", "1"), op_txn(txn(vec![], puts(2), vec![]))], vec![]),
            Err(KvError::TooManyOps),
        ),
        (
            "nested txn within the remaining budget",
            txn(vec![], vec![op_put("x", "1"), op_txn(txn(vec![], puts(1), vec![]))], vec![]),
            Ok(()),
        ),
        ("compare without key", txn(vec![version0("")], vec![], vec![]), Err(KvError::EmptyKey)),
        ("empty op", txn(vec![], vec![RequestOp { request: None }], vec![]), Err(KvError::KeyNotFound)),
        ("put without key", txn(vec![], vec![op_put("", "v")], vec![]), Err(KvError::EmptyKey)),
        ("bad op in the branch not taken", txn(vec![], vec![], vec![op_put("", "v")]), Err(KvError::EmptyKey)),
    ];
    for (what, request, want) in cases {
        let got = apply_txn(&mut s.clone(), request).map(|_| ());
        assert_eq!(got, want, "{what}");
    }
    // Default limit is etcd's 128.
    assert_eq!(Config::default().max_txn_ops, 128);
    assert!(apply_txn(&mut KvState::default(), txn(vec![], puts(128), vec![])).is_ok());
    assert_eq!(apply_txn(&mut KvState::default(), txn(vec![], puts(129), vec![])), Err(KvError::TooManyOps));
    s.apply(Command::Put(put_req("a", "1"))).unwrap();
}

#[test]
fn txn_that_fails_its_checks_applies_nothing() {
    let mut s = KvState::default();
    put(&mut s, "a", "1");
    let before = s.clone();
    let cases: Vec<(&str, TxnRequest, KvError)> = vec![
        (
            "unknown lease in a later op",
            txn(
                vec![],
                vec![op_put("b", "1"), op(Request::RequestPut(PutRequest { lease: 9, ..put_req("c", "1") }))],
                vec![],
            ),
            KvError::LeaseNotFound,
        ),
        (
            "ignore_value on a missing key",
            txn(
                vec![],
                vec![op_put("b", "1"), op(Request::RequestPut(PutRequest { ignore_value: true, ..put_req("zz", "") }))],
                vec![],
            ),
            KvError::KeyNotFound,
        ),
        (
            "future read revision",
            txn(
                vec![],
                vec![op_put("b", "1"), op(Request::RequestRange(RangeRequest { revision: 3, ..range_req("a", "") }))],
                vec![],
            ),
            KvError::FutureRevision,
        ),
    ];
    for (what, request, err) in cases {
        assert_eq!(apply_txn(&mut s, request), Err(err), "{what}");
        assert_eq!(s, before, "{what}");
    }
    // Checks follow the chosen path only: a bad lease in the branch not taken is fine.
    let never = cmp("a", "", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(9));
    let t = txn(
        vec![never],
        vec![op(Request::RequestPut(PutRequest { lease: 9, ..put_req("c", "1") }))],
        vec![op_put("b", "1")],
    );
    assert!(!apply_txn(&mut s, t).unwrap().succeeded);
}

#[test]
fn read_only_txn_is_answered_without_the_log() {
    let mut s = abcd();
    let is_d = cmp("a", "", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value("d".into()));
    let t = txn(vec![is_d], vec![op_get("a"), op_txn(txn(vec![], vec![op_get("b")], vec![]))], vec![]);
    assert!(synod_kv::is_read_only(&t));
    let read = s.txn_read(&t).unwrap();
    assert!(read.succeeded);
    assert_eq!(read.header.as_ref().unwrap().revision, 6);
    assert_eq!(read, apply_txn(&mut s, t).unwrap(), "same answer as through the log");
    let w = txn(vec![], vec![], vec![op_put("a", "1")]);
    assert!(!synod_kv::is_read_only(&w));
    assert_eq!(s.txn_read(&w), Err(KvError::WriteInReadOnlyTxn));
}

// ---- compaction ------------------------------------------------------------

#[test]
fn compaction_refuses_compacted_and_future_revisions() {
    let mut s = abcd(); // revision 6
    assert_eq!(compact(&mut s, 7).map(|_| ()), Err(KvError::FutureRevision));
    let applied = compact(&mut s, 4).unwrap();
    assert_eq!(applied.response.revision(), 6);
    assert_eq!(s.compact_revision(), 4);
    for rev in [4, 3, -1] {
        assert_eq!(compact(&mut s, rev).map(|_| ()), Err(KvError::Compacted), "compact {rev}");
    }
    assert!(compact(&mut s, 6).is_ok(), "compacting the current revision is allowed");
}

#[test]
fn compaction_keeps_what_is_visible_at_and_after_its_revision() {
    let mut s = KvState::default();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "a", "2"); // 3
    put(&mut s, "gone", "x"); // 4
    del(&mut s, "gone", ""); // 5
    put(&mut s, "a", "3"); // 6
    compact(&mut s, 5).unwrap();
    assert_eq!(get_at(&s, "a", 5).unwrap().unwrap().value, b"2");
    assert_eq!(get_at(&s, "a", 6).unwrap().unwrap().value, b"3");
    assert_eq!(get_at(&s, "gone", 5).unwrap(), None);
    assert_eq!(get_at(&s, "a", 4), Err(KvError::Compacted));
    let resp = s.range(&RangeRequest { revision: 5, ..range_req("\0", "\0") }).unwrap();
    assert_eq!(keys(&resp), ["a"]);
    // A later compaction drops the old value of `a`, still answering at 6.
    compact(&mut s, 6).unwrap();
    assert_eq!(get_at(&s, "a", 6).unwrap().unwrap().value, b"3");
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.version), (2, 3), "create revision and version survive compaction");
}

// ---- leases ----------------------------------------------------------------

#[test]
fn lease_grant_chooses_ids_clamps_ttl_and_refuses_duplicates() {
    let mut s = KvState::default();
    assert_eq!(grant(&mut s, 0, 60), Ok((1, 60)), "ID 0: the state machine chooses");
    assert_eq!(grant(&mut s, 2, 1), Ok((2, 2)), "TTL raised to the minimum");
    assert_eq!(grant(&mut s, 0, 60), Ok((3, 60)), "chosen IDs skip used ones");
    assert_eq!(grant(&mut s, 2, 60), Err(KvError::LeaseExists));
    assert_eq!(grant(&mut s, 9, synod_kv::MAX_LEASE_TTL + 1), Err(KvError::LeaseTtlTooLarge));
    assert_eq!(s.lease(2).unwrap().granted_ttl, 2);
    assert_eq!(s.leases().map(|(id, _)| id).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s.revision(), 1);
    assert_eq!(revoke(&mut s, 42).map(|_| ()), Err(KvError::LeaseNotFound));
}

#[test]
fn puts_attach_and_detach_keys_and_revoke_deletes_them_in_one_revision() {
    let mut s = KvState::default();
    grant(&mut s, 10, 60).unwrap();
    grant(&mut s, 20, 60).unwrap();
    put_lease(&mut s, "b", "1", 10); // 2
    put_lease(&mut s, "a", "1", 10); // 3
    put_lease(&mut s, "c", "1", 10); // 4
    put_lease(&mut s, "c", "2", 20); // 5: moves c to lease 20
    put_lease(&mut s, "d", "1", 10); // 6
    del(&mut s, "d", ""); // 7: deleting detaches
    let held = |s: &KvState, id| {
        s.lease(id).unwrap().keys.iter().map(|k| String::from_utf8(k.clone()).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(held(&s, 10), ["a", "b"]);
    assert_eq!(held(&s, 20), ["c"]);
    assert_eq!(get(&s, "a").unwrap().lease, 10);

    let applied = revoke(&mut s, 10).unwrap();
    assert_eq!(s.revision(), 8, "two keys deleted in one revision");
    assert_eq!(applied.response.revision(), 8);
    let deleted: Vec<_> = applied
        .events
        .iter()
        .map(|e| (e.r#type, e.kv.as_ref().unwrap().key.clone(), e.kv.as_ref().unwrap().mod_revision))
        .collect();
    let delete = i32::from(EventType::Delete);
    assert_eq!(deleted, [(delete, b"a".to_vec(), 8), (delete, b"b".to_vec(), 8)], "in key order");
    assert_eq!((get(&s, "a"), get(&s, "b")), (None, None));
    assert!(s.lease(10).is_none());
    assert_eq!(get(&s, "c").unwrap().lease, 20);
    assert_eq!(put(&mut s, "x", "1").response.revision(), 9);
    assert_eq!(
        s.apply(Command::Put(PutRequest { lease: 10, ..put_req("x", "1") })).map(|_| ()),
        Err(KvError::LeaseNotFound)
    );
}

// ---- watch events ----------------------------------------------------------

#[test]
fn applied_writes_return_events_with_prev_kv() {
    let mut s = KvState::default();
    let created = put(&mut s, "k", "1").events;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].r#type, i32::from(EventType::Put));
    assert_eq!(created[0].kv.as_ref().unwrap().value, b"1");
    assert_eq!(created[0].prev_kv, None);

    let updated = put(&mut s, "k", "2").events;
    assert_eq!(updated[0].prev_kv.as_ref().unwrap().value, b"1");

    let deleted = del(&mut s, "k", "").events;
    assert_eq!(deleted[0].r#type, i32::from(EventType::Delete));
    let kv = deleted[0].kv.as_ref().unwrap();
    assert_eq!(
        (kv.key.as_slice(), kv.mod_revision, kv.version, kv.create_revision),
        (&b"k"[..], 4, 0, 0),
        "a delete is a bare key at its revision"
    );
    assert_eq!(deleted[0].prev_kv.as_ref().unwrap().value, b"2");
}

#[test]
fn event_history_replays_what_apply_returned_until_compacted() {
    let mut s = KvState::default();
    let mut all = Vec::new();
    all.extend(put(&mut s, "a", "1").events); // 2
    all.extend(apply_txn_events(
        &mut s,
        txn(vec![], vec![op_put("b", "1"), op_put("a", "2"), op_del("zz", "")], vec![]),
    )); // 3
    all.extend(del(&mut s, "a", "c").events); // 4
    all.extend(put(&mut s, "a", "3").events); // 5
    assert_eq!(s.events(2, 5).unwrap(), all);
    assert_eq!(s.events(0, 100).unwrap(), all, "clamped to the store");
    assert_eq!(s.events(3, 3).unwrap(), all[1..3].to_vec());
    assert!(s.events(6, 10).unwrap().is_empty());
    compact(&mut s, 4).unwrap();
    assert_eq!(s.events(3, 5), Err(KvError::Compacted));
    assert_eq!(s.events(5, 5).unwrap(), all[5..].to_vec());
}

fn apply_txn_events(s: &mut KvState, t: TxnRequest) -> Vec<synod_kv::pb::Event> {
    s.apply(Command::Txn(t)).unwrap().events
}

// ---- snapshot, hash, encoding ----------------------------------------------

/// A history touching every kind of command.
fn busy() -> Vec<Command> {
    vec![
        Command::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 5 }),
        Command::Put(put_req("a", "1")),
        Command::Put(PutRequest { lease: 5, ..put_req("b", "1") }),
        Command::Txn(txn(vec![], vec![op_put("c", "1"), op_put("a", "2")], vec![])),
        Command::DeleteRange(del_req("c", "")),
        Command::Put(put_req("c", "again")),
        Command::Compact(CompactionRequest { revision: 4, physical: true }),
        Command::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 0 }),
        Command::Put(PutRequest { lease: 1, ..put_req("d", "1") }),
        Command::LeaseRevoke(LeaseRevokeRequest { id: 5 }),
        Command::Put(put_req("a", "3")),
    ]
}

#[test]
fn commands_roundtrip_through_bytes() {
    for command in busy() {
        let bytes = command.to_bytes();
        assert_eq!(Command::from_bytes(&bytes).unwrap(), command);
    }
    assert!(Command::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    assert!(matches!(Command::from_bytes(&[]), Err(synod_kv::DecodeError::Empty)));
}

#[test]
fn snapshot_restores_an_equal_state_that_goes_on_identically() {
    let mut s = KvState::default();
    let commands = busy();
    let (first, rest) = commands.split_at(7);
    for c in first {
        s.apply(c.clone()).unwrap();
    }
    let bytes = s.snapshot();
    let mut restored = KvState::restore(Config::default(), &bytes).unwrap();
    assert_eq!(restored, s);
    assert_eq!(restored.snapshot(), bytes, "deterministic bytes");
    for c in rest {
        assert_eq!(restored.apply(c.clone()), s.apply(c.clone()));
    }
    assert_eq!(restored, s);
    assert_eq!(restored.hash_kv(0).unwrap(), s.hash_kv(0).unwrap());
    assert!(KvState::restore(Config::default(), &[0xff, 0x01]).is_err());
}

#[test]
fn hash_is_equal_on_replicas_and_stable_for_past_revisions() {
    let mut one = KvState::default();
    let mut two = KvState::default();
    for c in busy() {
        one.apply(c.clone()).unwrap();
        two.apply(Command::from_bytes(&c.to_bytes()).unwrap()).unwrap();
    }
    let h = one.hash_kv(0).unwrap();
    assert_eq!(h, two.hash_kv(0).unwrap());
    assert_eq!((h.hash_revision, h.compact_revision), (one.revision(), 4));

    let past = one.hash_kv(6).unwrap();
    put(&mut one, "later", "x");
    assert_eq!(one.hash_kv(6).unwrap().hash, past.hash, "later writes do not change a past hash");
    assert_ne!(one.hash_kv(0).unwrap().hash, h.hash, "the new write changes the current hash");
    put(&mut two, "later", "y");
    assert_ne!(one.hash_kv(0).unwrap().hash, two.hash_kv(0).unwrap().hash, "diverged replicas differ");

    assert_eq!(one.hash_kv(one.revision() + 1).map(|_| ()), Err(KvError::FutureRevision));
    assert_eq!(one.hash_kv(3).map(|_| ()), Err(KvError::Compacted));
}

#[test]
fn keys_only_ranges_sorted_by_value_sort_before_dropping_values() {
    let mut s = KvState::default();
    for (k, v) in [("a", "3"), ("b", "1"), ("c", "2")] {
        s.apply(Command::Put(PutRequest { key: k.into(), value: v.into(), ..Default::default() })).unwrap();
    }
    let req = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"z".to_vec(),
        keys_only: true,
        sort_target: SortTarget::Value.into(),
        sort_order: SortOrder::Ascend.into(),
        limit: 2,
        ..Default::default()
    };
    let resp = s.range(&req).unwrap();
    let keys: Vec<&[u8]> = resp.kvs.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"b"[..], &b"c"[..]], "ascending by value, then limited");
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert!(resp.more);
}
