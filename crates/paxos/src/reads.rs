//! The leader's leases and linearizable reads.
//!
//! A leader that holds a lease (a quorum of acceptors promised not to
//! help another leader until a time it knows) answers from its state at
//! once; otherwise it confirms, by a heartbeat round answered by a quorum,
//! that no newer leader exists, then answers at its commit index as of the
//! read's arrival (the read-index method).
//!
//! A heartbeat round does three things at once: it carries the commit
//! index out, renews the lease (counted from when the round was *sent*,
//! minus a drift margin, in a phase-2 quorum of every configuration the
//! leader respects), and confirms the reads that wait for it. A leader
//! that hands its leadership over gives its lease up for good first (see
//! [`crate::handover`]); one that stops leading refuses the reads waiting
//! at it. These are methods of the leader at work ([`Leading`], in
//! `leader.rs`).

use crate::ballot::Ballot;
use crate::io::{ClientError, ReadResponse};
use crate::leader::Leading;
use crate::message::Message;
use crate::proposer::{Leader, Phase};
use crate::reconfig::Membership;
use crate::state_machine::StateMachine;
use crate::types::NodeId;
use bytes::Bytes;
use std::collections::BTreeMap;

impl<S: StateMachine> Leading<'_, S> {
    /// Leadership is being handed over to `to`: give up our lease in this
    /// ballot for good (it is never earned again in it) and refuse the reads
    /// waiting here, pointing their clients at `to`. Must happen before the
    /// handover message leaves (see [`crate::handover`]).
    pub(crate) fn forfeit_lease(&mut self, to: NodeId) {
        if self.cfg.plant().transfer_keeps_lease() {
            // The planted bug: keep the lease, and the reads it serves.
            return;
        }
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else { return };
        for (id, origin) in a.forfeit_lease() {
            match origin {
                Some(follower) => self.net.send(follower, Message::ReadIndexReply { id, index: 0 }),
                None => {
                    let result = Err(ClientError::NotLeader { leader: Some(to) });
                    self.net.out.reads.push(ReadResponse { id, result });
                }
            }
        }
    }

    /// Refuses `reads` (id, asking follower) that a leader no longer
    /// serves: a follower's read index is answered 0 (ask again), a
    /// client's read made here is pointed at the leader we know of.
    pub(crate) fn refuse_reads(&mut self, reads: Vec<(u64, Option<NodeId>)>) {
        let leader = self.clients.leader_hint.filter(|&l| l != self.cfg.id);
        for (id, origin) in reads {
            match origin {
                Some(follower) => self.net.send(follower, Message::ReadIndexReply { id, index: 0 }),
                None => self.net.out.reads.push(ReadResponse { id, result: Err(ClientError::NotLeader { leader }) }),
            }
        }
    }

    /// A heartbeat round: commit index out, lease renewal and read
    /// confirmation back.
    pub(crate) fn send_heartbeat(&mut self) {
        let now = self.now;
        let me = self.cfg.id;
        let lease_ticks = self.cfg.lease_ticks;
        let promised = self.promised;
        let commit = self.commit;
        let targets = self.heartbeat_targets();
        let Some(Leader { ballot, phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        let ballot = *ballot;
        let (seq, last_slot) = a.start_heartbeat(me, now, promised == ballot, lease_ticks > 0);
        if promised == ballot && lease_ticks > 0 {
            // Our acceptor grants us the lease too (the router records it).
            let until = self.own_lease.map_or(0, |(_, u)| u).max(now + lease_ticks);
            self.own_lease = Some((ballot, until));
        }
        for to in targets {
            self.net.send(to, Message::Heartbeat { ballot, commit, seq, last_slot });
        }
        self.update_confirmations();
    }

    pub(crate) fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, seq: u64, lease: bool) {
        let Some(a) = self.active_in(ballot) else { return };
        if a.heartbeat_acked(from, seq, lease) {
            self.update_confirmations();
        }
    }

    /// The highest heartbeat a phase-2 quorum of each of `configs` has
    /// acknowledged, per `acks`.
    fn quorum_seq(&self, configs: &[Membership], acks: &BTreeMap<NodeId, u64>) -> u64 {
        self.joint(configs).committed(|id| acks.get(&id).copied().unwrap_or(0))
    }

    /// Recompute what a quorum of heartbeat acknowledgements proves: the
    /// lease, and which pending reads are confirmed.
    pub(crate) fn update_confirmations(&mut self) {
        let margin = self.cfg.plant().lease_drift_margin(self.cfg.lease_drift_margin_ticks);
        let lease_ticks = self.cfg.lease_ticks;
        let configs = self.leader_configs();
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_ref() else {
            return;
        };
        let lease_seq = if lease_ticks > 0 { self.quorum_seq(&configs, a.lease_acks()) } else { 0 };
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        a.renew_lease(configs, lease_seq, lease_ticks, margin);
        self.serve_reads();
    }

    /// A linearizable read arrives. The leader serves it; a follower asks
    /// the leader for a read index and serves it once applied that far.
    pub(crate) fn on_read(&mut self, id: u64, query: Bytes) {
        if let Some(to) = self.handed_over_to() {
            // Our lease is given up: the client should ask the new leader.
            self.net.out.reads.push(ReadResponse { id, result: Err(ClientError::NotLeader { leader: Some(to) }) });
            return;
        }
        if self.proposer.is_leader() {
            self.queue_read(id, query, None);
            return;
        }
        if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_mut() {
            p.queue_read(id, query, None);
            return;
        }
        // A follower: ask the leader (or wait for one to appear).
        let (me, now) = (self.cfg.id, self.now);
        self.clients.follower_read(&mut self.net, me, id, query, now);
    }

    /// A follower asks for a read index.
    pub(crate) fn on_read_index(&mut self, from: NodeId, id: u64) {
        if self.handed_over_to().is_some() {
            self.net.send(from, Message::ReadIndexReply { id, index: 0 });
        } else if self.proposer.is_leader() {
            self.queue_read(id, Bytes::new(), Some(from));
        } else if let Some(Leader { phase: Phase::Preparing(p), .. }) = self.proposer.leader.as_mut() {
            // Answered once phase 1 completes.
            p.queue_read(id, Bytes::new(), Some(from));
        } else {
            self.net.send(from, Message::ReadIndexReply { id, index: 0 });
        }
    }

    pub(crate) fn queue_read(&mut self, id: u64, query: Bytes, origin: Option<NodeId>) {
        let now = self.now;
        let commit = self.commit;
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        if a.queue_read(id, query, origin, now, commit) {
            self.net.out.stats.lease_reads += 1;
        } else {
            self.net.out.stats.read_index_reads += 1;
        }
        self.serve_reads();
    }

    /// Answer every pending read that is confirmed (and, for reads made
    /// here, applied); tell followers their confirmed read index.
    pub(crate) fn serve_reads(&mut self) {
        let applied = self.applied;
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_ref() else {
            return;
        };
        if !a.has_reads() {
            return;
        }
        let confirmed = self.quorum_seq(&self.leader_configs(), a.acks());
        let Some(Leader { phase: Phase::Active(a), .. }) = self.proposer.leader.as_mut() else {
            return;
        };
        for r in a.take_ready_reads(confirmed, applied) {
            match r.origin {
                Some(follower) => {
                    let msg = Message::ReadIndexReply { id: r.id, index: r.read_index };
                    self.net.send(follower, msg);
                }
                None => {
                    let result = Ok(self.sm.query(&r.query));
                    self.net.out.reads.push(ReadResponse { id: r.id, result });
                }
            }
        }
    }
}
