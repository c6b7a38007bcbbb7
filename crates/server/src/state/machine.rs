//! The replicated state machine behind the etcd API: etcd's MVCC store plus
//! the attributes (name, client URLs) each member publishes when it starts,
//! as etcd publishes its members' attributes through raft, every member's
//! peer URLs (recorded when it is added or updated, or first published; see
//! [`crate::cluster::membership`]), and the active alarms ([`crate::alarm`]), raised
//! and cleared through the log as in etcd.
//!
//! What the log carries ([`Proposal`]) is a [`synod_kv::Command`]'s own
//! bytes, or a member's attributes under a field number the command
//! envelope never uses (100): both are plain protobuf, one decodes as the
//! other's unknown field, so a log of key-value commands stays readable as
//! such. A client's key-value write carries who sent it (field 121) so
//! the auth store ([`crate::auth`]) checks it again where it applies, and
//! auth changes ride under field 120. Reads ([`Query`]) are protobuf too. Applying never fails the
//! replica: a payload that does not decode is answered with an error, the
//! same on every replica.

use crate::alarm::Alarms;
use crate::auth::{AuthCommand, AuthError, AuthInfo, AuthReply, AuthSnapshot, AuthStore, AuthView};
use crate::state::watch_hub::RevisionFeed;
use bytes::Bytes;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use synod_etcd_api::etcdserverpb::{AlarmMember, AlarmRequest};
use synod_kv::pb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use synod_kv::{Command as KvCommand, KvError, KvState, Response};
use synod_paxos::{Command, Slot, SnapshotError, StateMachine};

/// What a member tells the cluster about itself when it starts.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MemberAttributes {
    /// The member's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The client URLs it serves the etcd API on.
    #[prost(string, repeated, tag = "3")]
    pub client_urls: Vec<String>,
    /// The URLs its peers reach it on.
    #[prost(string, repeated, tag = "4")]
    pub peer_urls: Vec<String>,
    /// Removed from the cluster: its id is never used again.
    #[prost(bool, tag = "5")]
    pub removed: bool,
    /// Added as a voter: it joins as a learner and the leader promotes it
    /// once it is in sync ([`crate::cluster::membership`]).
    #[prost(bool, tag = "6")]
    pub promote: bool,
}

/// The non-key-value proposals, under field numbers that
/// [`synod_kv::Command`]'s envelope does not use.
#[derive(Clone, PartialEq, prost::Message)]
struct Extension {
    #[prost(message, optional, tag = "100")]
    publish: Option<MemberAttributes>,
    #[prost(message, optional, tag = "101")]
    peer_urls: Option<MemberAttributes>,
    #[prost(uint64, optional, tag = "102")]
    forget: Option<u64>,
    #[prost(message, optional, tag = "110")]
    alarm: Option<AlarmRequest>,
    #[prost(message, optional, tag = "120")]
    auth: Option<AuthCommand>,
    #[prost(message, optional, tag = "121")]
    caller: Option<AuthInfo>,
    #[prost(bool, optional, tag = "130")]
    hash_check: Option<bool>,
    #[prost(message, optional, tag = "131")]
    hash_report: Option<HashReport>,
}

/// A member's hash of the key-value store (etcd's HashKV) as it stood when
/// it applied a [`Proposal::HashCheck`]: the same slot on every member, so
/// the same revision, and in a consistent cluster the same hash
/// ([`crate::corrupt`]).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HashReport {
    /// The member that hashed (0 in its own [`HashEvent::Checked`]).
    #[prost(uint64, tag = "1")]
    pub member: u64,
    /// The slot of the check.
    #[prost(uint64, tag = "2")]
    pub slot: u64,
    /// The store's revision there.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    /// Its compacted revision.
    #[prost(int64, tag = "4")]
    pub compact_revision: i64,
    /// The hash.
    #[prost(uint32, tag = "5")]
    pub hash: u32,
}

/// What the consistency checker ([`crate::corrupt`]) learns from the log.
#[derive(Clone, Debug, PartialEq)]
pub enum HashEvent {
    /// This member applied a check and hashed its store.
    Checked(HashReport),
    /// A member's report of its hash at a check was applied.
    Reported(HashReport),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq)]
pub enum Proposal {
    /// A key-value write the server makes itself (a lease's expiry): no
    /// permission applies.
    Kv(KvCommand),
    /// A client's key-value write and who sent it (an empty user when auth
    /// was disabled at the member that took it): checked against the auth
    /// store where it applies, as etcd's auth applier checks.
    KvAs(KvCommand, AuthInfo),
    /// An auth store change.
    Auth(AuthCommand),
    /// A member's attributes, published by itself when it starts: its name
    /// and client URLs, and its peer URLs if none are recorded yet.
    Publish(MemberAttributes),
    /// A member's peer URLs (`id` and `peer_urls` of the attributes), as
    /// `MemberAdd` and `MemberUpdate` set them.
    PeerUrls(MemberAttributes),
    /// A member was removed: its record is kept, marked removed, so its id
    /// is never used again.
    Forget(u64),
    /// Maintenance.Alarm: activate or deactivate an alarm.
    Alarm(AlarmRequest),
    /// Every member hashes its key-value store where it applies this.
    HashCheck,
    /// A member's hash at a check, for the others to compare.
    HashReport(HashReport),
}

impl Proposal {
    /// The bytes the log carries.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Proposal::Kv(c) => c.to_bytes().into(),
            Proposal::KvAs(c, caller) => {
                let mut bytes = c.to_bytes();
                Extension { caller: Some(caller.clone()), ..Default::default() }
                    .encode(&mut bytes)
                    .expect("a Vec grows");
                bytes.into()
            }
            Proposal::Auth(a) => Extension { auth: Some(a.clone()), ..Default::default() }.encode_to_vec().into(),
            Proposal::Publish(a) => Extension { publish: Some(a.clone()), ..Default::default() }.encode_to_vec().into(),
            Proposal::PeerUrls(a) => {
                Extension { peer_urls: Some(a.clone()), ..Default::default() }.encode_to_vec().into()
            }
            Proposal::Forget(id) => Extension { forget: Some(*id), ..Default::default() }.encode_to_vec().into(),
            Proposal::Alarm(r) => Extension { alarm: Some(*r), ..Default::default() }.encode_to_vec().into(),
            Proposal::HashCheck => Extension { hash_check: Some(true), ..Default::default() }.encode_to_vec().into(),
            Proposal::HashReport(r) => {
                Extension { hash_report: Some(r.clone()), ..Default::default() }.encode_to_vec().into()
            }
        }
    }

    /// Decodes [`Proposal::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Proposal, MachineError> {
        let mut caller = None;
        match Extension::decode(bytes) {
            Ok(Extension { auth: Some(a), .. }) => return Ok(Proposal::Auth(a)),
            Ok(Extension { caller: Some(c), .. }) => caller = Some(c),
            Ok(Extension { publish: Some(attrs), .. }) => return Ok(Proposal::Publish(attrs)),
            Ok(Extension { peer_urls: Some(attrs), .. }) => return Ok(Proposal::PeerUrls(attrs)),
            Ok(Extension { forget: Some(id), .. }) => return Ok(Proposal::Forget(id)),
            Ok(Extension { alarm: Some(r), .. }) => return Ok(Proposal::Alarm(r)),
            Ok(Extension { hash_check: Some(_), .. }) => return Ok(Proposal::HashCheck),
            Ok(Extension { hash_report: Some(r), .. }) => return Ok(Proposal::HashReport(r)),
            _ => {}
        }
        let cmd = KvCommand::from_bytes(bytes).map_err(|e| MachineError::Malformed(e.to_string()))?;
        Ok(match caller {
            Some(c) => Proposal::KvAs(cmd, c),
            None => Proposal::Kv(cmd),
        })
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct QueryWire {
    #[prost(oneof = "QueryKind", tags = "1, 2, 3, 20")]
    kind: Option<QueryKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum QueryKind {
    #[prost(message, tag = "1")]
    Range(RangeRequest),
    #[prost(message, tag = "2")]
    Txn(TxnRequest),
    #[prost(bool, tag = "3")]
    Members(bool),
    #[prost(message, tag = "20")]
    Alarms(AlarmRequest),
}

/// A read answered without the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// KV.Range.
    Range(RangeRequest),
    /// KV.Txn without writes.
    Txn(TxnRequest),
    /// The members' published attributes.
    Members,
    /// The active alarms of one type ([`crate::alarm::NONE`]: all).
    Alarms(i32),
}

impl Query {
    /// The bytes handed to [`synod_runtime::Handle::read`].
    pub fn to_bytes(&self) -> Bytes {
        let kind = match self.clone() {
            Query::Range(r) => QueryKind::Range(r),
            Query::Txn(t) => QueryKind::Txn(t),
            Query::Members => QueryKind::Members(true),
            Query::Alarms(alarm) => QueryKind::Alarms(AlarmRequest { alarm, ..Default::default() }),
        };
        QueryWire { kind: Some(kind) }.encode_to_vec().into()
    }

    /// Decodes [`Query::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Query, MachineError> {
        let wire = QueryWire::decode(bytes).map_err(|e| MachineError::Malformed(e.to_string()))?;
        match wire.kind {
            Some(QueryKind::Range(r)) => Ok(Query::Range(r)),
            Some(QueryKind::Txn(t)) => Ok(Query::Txn(t)),
            Some(QueryKind::Members(_)) => Ok(Query::Members),
            Some(QueryKind::Alarms(r)) => Ok(Query::Alarms(r.alarm)),
            None => Err(MachineError::Malformed("empty query".into())),
        }
    }
}

/// What a proposal or a query returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A key-value write's response (header carries the revision only).
    Write(Response),
    /// A range's response.
    Range(RangeResponse),
    /// A read-only txn's response.
    Txn(TxnResponse),
    /// Every member's published attributes, by id.
    Members(Vec<MemberAttributes>),
    /// A member's attributes were recorded.
    Published,
    /// The alarms an `Alarm` request activated, deactivated or listed.
    Alarms(Vec<AlarmMember>),
    /// An auth store change was applied.
    Auth(AuthReply),
    /// This member's hash at a [`Proposal::HashCheck`], or a report of one
    /// noted.
    Hash(HashReport),
}

/// Why a proposal or query failed; the same on every replica.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MachineError {
    /// etcd's error for the request.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// etcd's auth error for the request.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The bytes were not a proposal or query (a server bug or a newer
    /// member's command).
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// The result of applying a proposal or answering a query.
pub type Output = Result<Reply, MachineError>;

#[derive(Clone, PartialEq, prost::Message)]
struct SnapshotWire {
    #[prost(bytes = "vec", tag = "1")]
    kv: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    members: Vec<MemberAttributes>,
    #[prost(message, repeated, tag = "110")]
    alarms: Vec<AlarmMember>,
    #[prost(message, optional, tag = "120")]
    auth: Option<AuthSnapshot>,
}

/// The most ops the state machine applies in one txn: more than any
/// member's `--max-txn-ops` (a u32) allows. Each member refuses a txn over
/// its own flag before proposing it, as etcd's API layer does; the state
/// machine must not apply a second, member-local limit, or members with
/// different flags would apply the same txn differently.
pub const APPLY_MAX_TXN_OPS: usize = u32::MAX as usize;

/// The replicated state: etcd's MVCC store and the members' attributes.
#[derive(Clone, Debug)]
pub struct EtcdMachine {
    kv: KvState,
    members: BTreeMap<u64, MemberAttributes>,
    /// Given the events of every applied write, and told when a snapshot
    /// replaces the state, so watchers learn of changes without polling.
    /// Not part of the replicated state.
    feed: Option<Arc<RevisionFeed>>,
    alarms: Alarms,
    auth: AuthStore,
    /// Where the services read the auth store from, given a copy after
    /// every change. Not part of the replicated state.
    auth_view: Option<Arc<AuthView>>,
    /// Times each command's apply, for metrics. Not part of the replicated
    /// state: the clock it reads decides nothing.
    apply_time: Option<prometheus::Histogram>,
    /// Told of hash checks and reports as they apply. Not part of the
    /// replicated state.
    hashes: Option<tokio::sync::mpsc::UnboundedSender<HashEvent>>,
}

impl Default for EtcdMachine {
    fn default() -> EtcdMachine {
        EtcdMachine {
            kv: KvState::new(synod_kv::Config { max_txn_ops: APPLY_MAX_TXN_OPS, ..synod_kv::Config::default() }),
            members: BTreeMap::new(),
            feed: None,
            alarms: Alarms::default(),
            auth: AuthStore::default(),
            auth_view: None,
            hashes: None,
            apply_time: None,
        }
    }
}

impl EtcdMachine {
    /// An empty store at revision 1 (the txn limit is each member's, see
    /// [`APPLY_MAX_TXN_OPS`]).
    pub fn new() -> EtcdMachine {
        EtcdMachine::default()
    }

    /// An empty store that hands the events of every write it applies to
    /// `feed` (the watch hub's input).
    pub fn with_revision_feed(feed: Arc<RevisionFeed>) -> EtcdMachine {
        EtcdMachine { feed: Some(feed), ..EtcdMachine::default() }
    }

    /// Publishes the auth store to `view` now and after every change.
    pub fn with_auth_view(mut self, view: Arc<AuthView>) -> EtcdMachine {
        view.publish(&self.auth);
        self.auth_view = Some(view);
        self
    }

    /// Observes into `histogram` how long each command takes to apply.
    pub fn with_apply_histogram(mut self, histogram: prometheus::Histogram) -> EtcdMachine {
        self.apply_time = Some(histogram);
        self
    }

    /// Tells `events` of every hash check and report applied from now on
    /// ([`crate::corrupt`]).
    pub fn with_hash_events(mut self, events: tokio::sync::mpsc::UnboundedSender<HashEvent>) -> EtcdMachine {
        self.hashes = Some(events);
        self
    }

    fn tell(&self, event: HashEvent) {
        if let Some(events) = &self.hashes {
            // Nobody listening (the member is stopping) is fine.
            let _ = events.send(event);
        }
    }

    /// The auth store.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    fn publish_auth(&self) {
        if let Some(view) = &self.auth_view {
            view.publish(&self.auth);
        }
    }

    /// The key-value store.
    pub fn kv(&self) -> &KvState {
        &self.kv
    }

    /// The active alarms.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// A machine holding `kv` and `auth` and nothing else (no members, no
    /// alarms): the state a cluster restored from a snapshot starts from.
    pub fn from_kv(kv: KvState, auth: AuthStore) -> EtcdMachine {
        EtcdMachine { kv, auth, ..EtcdMachine::default() }
    }

    /// Every member's published attributes, in id order.
    pub fn members(&self) -> Vec<MemberAttributes> {
        self.members.values().cloned().collect()
    }

    /// Member `id`'s record, created empty if there is none.
    fn record(&mut self, id: u64) -> &mut MemberAttributes {
        self.members.entry(id).or_insert_with(|| MemberAttributes { id, ..Default::default() })
    }

    /// Answers a read from this replica's state.
    pub fn answer(&self, query: &Query) -> Output {
        match query {
            Query::Range(r) => Ok(Reply::Range(self.kv.range(r)?)),
            Query::Txn(t) => Ok(Reply::Txn(self.kv.txn_read(t)?)),
            Query::Members => Ok(Reply::Members(self.members())),
            Query::Alarms(alarm) => Ok(Reply::Alarms(self.alarms.get(*alarm))),
        }
    }
}

impl EtcdMachine {
    fn apply_kv(&mut self, c: KvCommand) -> Output {
        self.alarms.check(&c)?;
        let applied = self.kv.apply(c)?;
        if let (Some(feed), false) = (&self.feed, applied.events.is_empty()) {
            feed.applied(self.kv.revision(), applied.events);
        }
        Ok(Reply::Write(applied.response))
    }

    /// Applies one command from the log (see [`StateMachine::apply`]).
    fn apply_proposal(&mut self, slot: Slot, command: &Command) -> Output {
        match Proposal::from_bytes(&command.payload)? {
            Proposal::Auth(a) => {
                let reply = self.auth.apply(slot, a)?;
                self.publish_auth();
                Ok(Reply::Auth(reply))
            }
            Proposal::KvAs(c, caller) => {
                self.auth.check_command(Some(&caller), Some(&self.kv), &c)?;
                self.apply_kv(c)
            }
            Proposal::Kv(c) => self.apply_kv(c),
            Proposal::Alarm(r) => Ok(Reply::Alarms(self.alarms.apply(&r))),
            Proposal::HashCheck => {
                // Hashing reads the store and changes nothing.
                let hashed = self.kv.hash_kv(0)?;
                let report = HashReport {
                    member: 0,
                    slot,
                    revision: hashed.hash_revision,
                    compact_revision: hashed.compact_revision,
                    hash: hashed.hash,
                };
                self.tell(HashEvent::Checked(report.clone()));
                Ok(Reply::Hash(report))
            }
            Proposal::HashReport(r) => {
                self.tell(HashEvent::Reported(r.clone()));
                Ok(Reply::Hash(r))
            }
            Proposal::Publish(attrs) => {
                let m = self.record(attrs.id);
                m.name = attrs.name;
                m.client_urls = attrs.client_urls;
                if m.peer_urls.is_empty() {
                    m.peer_urls = attrs.peer_urls;
                }
                Ok(Reply::Published)
            }
            Proposal::PeerUrls(attrs) => {
                let m = self.record(attrs.id);
                m.peer_urls = attrs.peer_urls;
                m.promote |= attrs.promote;
                Ok(Reply::Published)
            }
            Proposal::Forget(id) => {
                self.record(id).removed = true;
                Ok(Reply::Published)
            }
        }
    }
}

impl StateMachine for EtcdMachine {
    type Output = Output;

    fn apply(&mut self, slot: Slot, command: &Command) -> Output {
        let started = self.apply_time.is_some().then(std::time::Instant::now);
        let output = self.apply_proposal(slot, command);
        if let (Some(histogram), Some(started)) = (&self.apply_time, started) {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        output
    }

    fn query(&self, query: &[u8]) -> Output {
        self.answer(&Query::from_bytes(query)?)
    }

    fn snapshot(&self) -> Vec<u8> {
        SnapshotWire {
            kv: self.kv.snapshot(),
            members: self.members(),
            alarms: self.alarms.get(crate::alarm::NONE),
            auth: Some(self.auth.to_snapshot()),
        }
        .encode_to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotError> {
        let wire = SnapshotWire::decode(snapshot).map_err(|e| SnapshotError(e.to_string()))?;
        let kv = KvState::restore(self.kv.config().clone(), &wire.kv).map_err(|e| SnapshotError(e.to_string()))?;
        self.kv = kv;
        self.members = wire.members.into_iter().map(|m| (m.id, m)).collect();
        self.alarms = Alarms::from_list(&wire.alarms);
        self.auth = wire.auth.map(AuthStore::from_snapshot).unwrap_or_default();
        self.publish_auth();
        if let Some(feed) = &self.feed {
            feed.replaced(self.kv.revision());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::pb::PutRequest;

    fn put(key: &str) -> Proposal {
        Proposal::Kv(KvCommand::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() }))
    }

    fn attrs(id: u64) -> MemberAttributes {
        MemberAttributes {
            id,
            name: format!("n{id}"),
            client_urls: vec![format!("http://127.0.0.1:{id}")],
            peer_urls: vec![format!("http://127.0.0.1:{}", id + 1)],
            removed: false,
            promote: false,
        }
    }

    #[test]
    fn proposals_round_trip_and_kv_commands_stay_plain_commands() {
        let alarm = Proposal::Alarm(AlarmRequest {
            action: crate::alarm::ACTIVATE,
            member_id: 7,
            alarm: crate::alarm::NOSPACE,
        });
        let report =
            Proposal::HashReport(HashReport { member: 3, slot: 9, revision: 4, compact_revision: 2, hash: 0xfeed });
        for p in [
            put("k"),
            Proposal::Publish(attrs(7)),
            Proposal::PeerUrls(attrs(8)),
            Proposal::Forget(9),
            alarm,
            Proposal::HashCheck,
            report,
        ] {
            assert_eq!(Proposal::from_bytes(&p.to_bytes()).unwrap(), p);
        }
        let Proposal::Kv(c) = put("k") else { unreachable!() };
        assert_eq!(KvCommand::from_bytes(&put("k").to_bytes()).unwrap(), c);
        assert!(Proposal::from_bytes(b"\xff\xff").is_err());
    }

    #[test]
    fn apply_query_snapshot_restore() {
        let mut m = EtcdMachine::new();
        let cmd = |p: Proposal| Command::new(1, 1, p.to_bytes());
        assert!(matches!(m.apply(1, &cmd(put("a"))), Ok(Reply::Write(_))));
        assert_eq!(m.apply(2, &cmd(Proposal::Publish(attrs(3)))), Ok(Reply::Published));
        let q = Query::Range(RangeRequest { key: b"a".to_vec(), ..Default::default() });
        let Ok(Reply::Range(r)) = m.query(&q.to_bytes()) else { panic!("range failed") };
        assert_eq!(r.kvs.len(), 1);
        let mut restored = EtcdMachine::new();
        restored.restore(&m.snapshot()).unwrap();
        assert_eq!(restored.kv(), m.kv());
        assert_eq!(restored.auth(), m.auth());
        assert_eq!(restored.members(), vec![attrs(3)]);
        // Peer URLs: published ones only fill a gap; an update replaces
        // them; a removed member stays listed as removed.
        let moved = MemberAttributes { peer_urls: vec!["http://10.0.0.1:2380".into()], ..attrs(3) };
        assert_eq!(m.apply(4, &cmd(Proposal::PeerUrls(moved.clone()))), Ok(Reply::Published));
        assert_eq!(m.apply(5, &cmd(Proposal::Publish(attrs(3)))), Ok(Reply::Published));
        assert_eq!(m.members(), vec![moved.clone()]);
        assert_eq!(m.apply(6, &cmd(Proposal::Forget(3))), Ok(Reply::Published));
        assert_eq!(m.members(), vec![MemberAttributes { removed: true, ..moved }]);
        assert!(matches!(m.apply(3, &Command::new(1, 2, &b"\x08"[..])), Err(MachineError::Malformed(_))));
    }

    #[test]
    fn nospace_alarm_refuses_puts_survives_snapshots_and_clears_through_the_log() {
        use crate::alarm::{ACTIVATE, DEACTIVATE, NONE, NOSPACE};
        let mut m = EtcdMachine::new();
        let cmd = |p: Proposal| Command::new(1, 1, p.to_bytes());
        let raise = Proposal::Alarm(AlarmRequest { action: ACTIVATE, member_id: 9, alarm: NOSPACE });
        let listed = vec![AlarmMember { member_id: 9, alarm: NOSPACE }];
        assert_eq!(m.apply(1, &cmd(raise)), Ok(Reply::Alarms(listed.clone())));
        assert_eq!(m.apply(2, &cmd(put("a"))), Err(MachineError::Kv(KvError::NoSpace)));
        assert_eq!(m.query(&Query::Alarms(NONE).to_bytes()), Ok(Reply::Alarms(listed.clone())));

        let mut restored = EtcdMachine::new();
        restored.restore(&m.snapshot()).unwrap();
        assert_eq!(restored.alarms(), m.alarms());
        assert_eq!(restored.apply(2, &cmd(put("a"))), Err(MachineError::Kv(KvError::NoSpace)));

        let clear = Proposal::Alarm(AlarmRequest { action: DEACTIVATE, member_id: 9, alarm: NOSPACE });
        assert_eq!(restored.apply(3, &cmd(clear)), Ok(Reply::Alarms(listed)));
        assert!(matches!(restored.apply(4, &cmd(put("a"))), Ok(Reply::Write(_))));
    }
}
