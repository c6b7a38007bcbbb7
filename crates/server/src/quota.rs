//! The space quota (etcd's `--quota-backend-bytes`), checked before a
//! write is proposed, as etcd's gRPC quota interceptor does.
//!
//! The size compared with the quota is the store's deterministic logical
//! size ([`synod_kv::KvState::db_size`]) as this member has applied it. A
//! write that would take it over the quota is refused with "etcdserver:
//! mvcc: database space exceeded" and raises the NOSPACE alarm through the
//! log, so every member then refuses such writes at the same slot (see
//! [`crate::alarm`]). Only writes that grow the store are checked: deletes
//! and compaction, which free space, always pass.

use crate::alarm::{ACTIVATE, NOSPACE};
use crate::context::Context;
use crate::state::machine::Proposal;
use crate::status;
use synod_etcd_api::etcdserverpb::AlarmRequest;
use synod_kv::{Command as KvCommand, KvError};
use tonic::Status;
use tracing::warn;

/// etcd's default `--quota-backend-bytes`: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// etcd's largest `--quota-backend-bytes` (8 GiB); above it etcd warns and
/// uses this.
pub const MAX_QUOTA_BYTES: u64 = 8 << 30;

/// The quota a `--quota-backend-bytes` value means: 0 is the default, and
/// values above [`MAX_QUOTA_BYTES`] are capped to it, as in etcd.
pub fn effective_quota(flag: u64) -> u64 {
    match flag {
        0 => DEFAULT_QUOTA_BYTES,
        q => q.min(MAX_QUOTA_BYTES),
    }
}

/// Refuses `cmd` with etcd's NOSPACE error if it would take the store over
/// `ctx.quota_bytes`, raising the NOSPACE alarm (for this member) first.
pub async fn check(ctx: &Context, cmd: &KvCommand) -> Result<(), Status> {
    let cost = synod_kv::cost(cmd);
    if cost == 0 {
        return Ok(());
    }
    let size = ctx.handle.with_state(|m| m.kv().db_size()).await.map_err(|e| status::runtime(&e))?;
    if size.saturating_add(cost) <= ctx.quota_bytes {
        return Ok(());
    }
    let raise = AlarmRequest { action: ACTIVATE, member_id: ctx.member_id, alarm: NOSPACE };
    match ctx.propose(Proposal::Alarm(raise).to_bytes()).await {
        Ok(_) => warn!(size, cost, quota = ctx.quota_bytes, "space quota exceeded; NOSPACE alarm raised"),
        Err(e) => warn!(error = %e, "space quota exceeded; raising the NOSPACE alarm failed"),
    }
    Err(status::kv(&KvError::NoSpace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_the_default_and_huge_quotas_are_capped() {
        assert_eq!(effective_quota(0), DEFAULT_QUOTA_BYTES);
        assert_eq!(effective_quota(1024), 1024);
        assert_eq!(effective_quota(u64::MAX), MAX_QUOTA_BYTES);
    }
}
