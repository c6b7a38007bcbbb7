//! etcd's alarms, as part of the replicated state: which member raised
//! which alarm, and what an active alarm refuses.
//!
//! Alarms change only through the log (an `Alarm` proposal with action
//! ACTIVATE or DEACTIVATE), so every member lists the same alarms and
//! refuses the same writes at the same slot. While NOSPACE is active, every
//! write that would grow the store (a put, a txn with puts, a lease grant:
//! [`synod_kv::cost`] above zero) fails with "etcdserver: mvcc: database
//! space exceeded", as etcd's capped applier does; reads, deletes,
//! compaction and lease revokes still work, so an operator can free space.
//! CORRUPT is recorded and listed but refuses nothing, as in etcd; the
//! corruption check ([`crate::corrupt`]) raises it for a member whose store
//! differs from the majority's, and an operator may.

use std::collections::BTreeSet;
use synod_etcd_api::etcdserverpb::alarm_request::AlarmAction;
use synod_etcd_api::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType};
use synod_kv::{Command as KvCommand, KvError};

// The wire numbers come from the enums generated from etcd's proto
// (synod-etcd-api), never copied by hand.

/// etcd's `AlarmType.NONE`: in a GET, every alarm.
pub const NONE: i32 = AlarmType::None as i32;
/// etcd's `AlarmType.NOSPACE`: the space quota is used up.
pub const NOSPACE: i32 = AlarmType::Nospace as i32;
/// etcd's `AlarmType.CORRUPT`: a member's data is inconsistent.
pub const CORRUPT: i32 = AlarmType::Corrupt as i32;

/// etcd's `AlarmAction.GET`.
pub const GET: i32 = AlarmAction::Get as i32;
/// etcd's `AlarmAction.ACTIVATE`.
pub const ACTIVATE: i32 = AlarmAction::Activate as i32;
/// etcd's `AlarmAction.DEACTIVATE`.
pub const DEACTIVATE: i32 = AlarmAction::Deactivate as i32;

/// The active alarms, as (alarm type, member id), in that order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    active: BTreeSet<(i32, u64)>,
}

impl Alarms {
    /// Rebuilds the set from a snapshot's list.
    pub fn from_list(list: &[AlarmMember]) -> Alarms {
        Alarms { active: list.iter().map(|m| (m.alarm, m.member_id)).collect() }
    }

    /// Every active alarm of type `alarm` ([`NONE`]: of every type), by
    /// type then member.
    pub fn get(&self, alarm: i32) -> Vec<AlarmMember> {
        self.active
            .iter()
            .filter(|(a, _)| alarm == NONE || *a == alarm)
            .map(|&(alarm, member_id)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Whether any member has raised `alarm`.
    pub fn is_active(&self, alarm: i32) -> bool {
        self.active.iter().any(|(a, _)| *a == alarm)
    }

    /// Applies an `Alarm` request from the log, answering as etcd does:
    /// ACTIVATE returns the (possibly already active) alarm, DEACTIVATE the
    /// alarm it removed (none if it was not active), GET the active alarms
    /// of the requested type. Unknown alarm types and actions change nothing.
    pub fn apply(&mut self, req: &AlarmRequest) -> Vec<AlarmMember> {
        let member = AlarmMember { member_id: req.member_id, alarm: req.alarm };
        let known = req.alarm == NOSPACE || req.alarm == CORRUPT;
        match req.action {
            ACTIVATE if known => {
                self.active.insert((req.alarm, req.member_id));
                vec![member]
            }
            DEACTIVATE if self.active.remove(&(req.alarm, req.member_id)) => vec![member],
            GET => self.get(req.alarm),
            _ => Vec::new(),
        }
    }

    /// etcd's capped applier: refuses a write that would grow the store
    /// while NOSPACE is active.
    pub fn check(&self, cmd: &KvCommand) -> Result<(), KvError> {
        if self.is_active(NOSPACE) && synod_kv::cost(cmd) > 0 {
            return Err(KvError::NoSpace);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::pb::{DeleteRangeRequest, LeaseGrantRequest, PutRequest};

    fn req(action: i32, member_id: u64, alarm: i32) -> AlarmRequest {
        AlarmRequest { action, member_id, alarm }
    }

    #[test]
    fn activate_deactivate_and_get_answer_as_etcd() {
        let mut a = Alarms::default();
        assert_eq!(a.apply(&req(ACTIVATE, 7, NOSPACE)), vec![AlarmMember { member_id: 7, alarm: NOSPACE }]);
        // Activating again still names the alarm; it is listed once.
        assert_eq!(a.apply(&req(ACTIVATE, 7, NOSPACE)).len(), 1);
        a.apply(&req(ACTIVATE, 3, CORRUPT));
        assert!(a.apply(&req(ACTIVATE, 3, NONE)).is_empty());
        assert_eq!(a.get(NONE).len(), 2);
        assert_eq!(a.get(NOSPACE), vec![AlarmMember { member_id: 7, alarm: NOSPACE }]);
        assert!(a.apply(&req(DEACTIVATE, 8, NOSPACE)).is_empty(), "not raised by member 8");
        assert_eq!(a.apply(&req(DEACTIVATE, 7, NOSPACE)).len(), 1);
        assert!(!a.is_active(NOSPACE));
        assert_eq!(Alarms::from_list(&a.get(NONE)), a);
    }

    #[test]
    fn nospace_refuses_only_writes_that_grow_the_store() {
        let mut a = Alarms::default();
        let put = KvCommand::Put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() });
        let grant = KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 0 });
        let delete = KvCommand::DeleteRange(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() });
        assert_eq!(a.check(&put), Ok(()));
        a.apply(&req(ACTIVATE, 1, NOSPACE));
        assert_eq!(a.check(&put), Err(KvError::NoSpace));
        assert_eq!(a.check(&grant), Err(KvError::NoSpace));
        assert_eq!(a.check(&delete), Ok(()));
    }
}
