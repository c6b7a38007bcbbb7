//! Range reads with etcd's options: historical revision, limit, sort,
//! revision filters, keys-only and count-only, and how etcd computes
//! `count` and `more`.

use std::cmp::Ordering;

use crate::error::KvError;
use crate::mvcc::Mvcc;
use crate::pb::{header, KeyValue, RangeRequest, RangeResponse, SortOrder, SortTarget};

/// Answers `req` as of `current`, the newest revision the reader may see.
///
/// Mirrors etcd's `applierV3backend.Range` over `mvcc.rangeKeys`:
/// - `count` is the number of keys in the range at the read revision, before
///   `limit` and before the min/max revision filters;
/// - `more` says that `limit` cut the (filtered, sorted) result short;
/// - the header revision is `current`, also for historical reads.
///
/// The request must have passed [`crate::validate_range`].
pub(crate) fn range(mvcc: &Mvcc, req: &RangeRequest, current: i64) -> Result<RangeResponse, KvError> {
    if req.revision > current {
        return Err(KvError::FutureRevision);
    }
    let rev = if req.revision <= 0 { current } else { req.revision };
    if rev < mvcc.compacted() {
        return Err(KvError::Compacted);
    }
    let live = mvcc.live_in(&req.key, &req.range_end, rev);
    if req.count_only {
        return Ok(RangeResponse { header: header(current), count: live.count() as i64, ..RangeResponse::default() });
    }

    let sort_order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let sort_target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Results come in ascending key order, so etcd sorts ascending by
    // default for any other target, and skips sorting by key ascending.
    let order = match (sort_target, sort_order) {
        (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
        (SortTarget::Key, order) => order,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, order) => order,
    };
    // Sorting or filtering needs every key; otherwise fetch one past the
    // limit to learn whether there is more. As in etcd, this looks at the
    // order asked for: a non-key target with no order sorts only the keys
    // fetched.
    let fetch = if sort_order != SortOrder::None || filtered || req.limit <= 0 {
        usize::MAX
    } else {
        usize::try_from(req.limit).unwrap_or(usize::MAX).saturating_add(1)
    };

    let mut count = 0i64;
    let mut kvs: Vec<KeyValue> = Vec::new();
    for (key, entry) in live {
        count += 1;
        if kvs.len() < fetch {
            // Values are dropped for keys_only only after sorting: etcd sorts
            // by value first.
            kvs.push(entry.to_kv(key, !req.keys_only || sort_target == SortTarget::Value));
        }
    }

    if filtered {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
    }

    if order != SortOrder::None {
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        // Stable, so ties keep key order on every replica (etcd's Go sort
        // leaves ties unspecified).
        match order {
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
            _ => kvs.sort_by(by),
        }
    }

    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    Ok(RangeResponse { header: header(current), kvs, more, count })
}
