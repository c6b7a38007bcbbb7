//! The safety properties checked after every simulated event.
//!
//! * agreement: no two replicas learn different values for one slot;
//! * validity: a chosen value is a no-op or a batch of commands clients
//!   really proposed;
//! * durability: what a replica learned stays learned across its crashes
//!   (a recovered replica's chosen prefix is re-checked against agreement),
//!   and a replica never forgets a promise or acceptance it acknowledged;
//! * monotonicity: a replica's promised ballot never decreases, and no
//!   accepted ballot exceeds the promised one;
//! * unique proposals: no ballot carries two values for one slot;
//! * lease exclusivity (checked by the world, which sees every clock): no
//!   two replicas hold a leader lease at the same moment;
//! * configuration: a voting replica that has learned every slot up to `c`
//!   holds, as the configuration governing `c + 1`, the one the α rule gives
//!   from the chosen log (the last change chosen at or below `c + 1 - α`),
//!   so all replicas count each slot's quorums in the same configuration.
//!
//! Each check is incremental, so checking after every event stays cheap.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use synod_paxos::{
    Ballot, Command, CommandId, KvMachine, Membership, Message, NodeId, Replica, SessionInfo, Slot, Value,
};

/// An invariant that broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two replicas learned different values for one slot.
    Agreement {
        /// The slot.
        slot: Slot,
        /// The replica that disagreed.
        node: usize,
    },
    /// A chosen value contains a command nobody proposed.
    Validity {
        /// The slot.
        slot: Slot,
    },
    /// A replica's promised ballot went down.
    PromiseDecreased {
        /// The replica.
        node: usize,
        /// Before.
        from: Ballot,
        /// After.
        to: Ballot,
    },
    /// After a restart a replica no longer holds a promise it had
    /// acknowledged to a peer.
    PromiseForgotten {
        /// The replica.
        node: usize,
        /// What it acknowledged.
        acknowledged: Ballot,
        /// What it recovered.
        recovered: Ballot,
    },
    /// An accepted ballot exceeds the promised one.
    AcceptedAbovePromised {
        /// The replica.
        node: usize,
        /// The slot.
        slot: Slot,
    },
    /// The client history is not linearizable.
    Linearizability(String),
    /// After faults healed, operations stayed pending too long.
    Liveness {
        /// Operations still pending.
        pending: usize,
        /// The bound, in ticks.
        ticks: u64,
    },
    /// A replica refused its own durable records.
    Recovery(String),
    /// Two replicas held a leader lease at the same moment.
    LeaseOverlap {
        /// One holder.
        a: usize,
        /// The other.
        b: usize,
    },
    /// A replica holds a configuration for a slot other than the one the
    /// α rule gives from the chosen log.
    Configuration {
        /// The replica.
        node: usize,
        /// The slot.
        slot: Slot,
    },
    /// Two replicas that applied the same slots hold different
    /// duplicate-detection tables (session expiry must be a function of
    /// the log alone, snapshots included).
    Sessions {
        /// The replica that differed from the first to apply that slot.
        node: usize,
        /// Its applied index.
        slot: Slot,
    },
    /// Two different values were proposed in one ballot for one slot.
    BallotReuse {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
    },
}

impl Violation {
    /// The invariant's name, as printed in summaries.
    pub fn invariant(&self) -> &'static str {
        match self {
            Violation::Agreement { .. } => "agreement",
            Violation::Validity { .. } => "validity",
            Violation::PromiseDecreased { .. } => "promise-monotonic",
            Violation::PromiseForgotten { .. } => "durability",
            Violation::AcceptedAbovePromised { .. } => "accepted<=promised",
            Violation::Linearizability(_) => "linearizability",
            Violation::Liveness { .. } => "liveness",
            Violation::Recovery(_) => "recovery",
            Violation::BallotReuse { .. } => "unique-proposals",
            Violation::LeaseOverlap { .. } => "lease-exclusive",
            Violation::Configuration { .. } => "configuration",
            Violation::Sessions { .. } => "sessions",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Agreement { slot, node } => {
                write!(f, "agreement: node index {node} learned a different value for slot {slot}")
            }
            Violation::Validity { slot } => write!(f, "validity: slot {slot} holds a command never proposed"),
            Violation::PromiseDecreased { node, from, to } => {
                write!(f, "promise-monotonic: node index {node} promised {from} then {to}")
            }
            Violation::PromiseForgotten { node, acknowledged, recovered } => {
                write!(f, "durability: node index {node} acknowledged {acknowledged} but recovered only {recovered}")
            }
            Violation::AcceptedAbovePromised { node, slot } => {
                write!(f, "accepted<=promised: node index {node} slot {slot}")
            }
            Violation::Linearizability(s) => write!(f, "linearizability: {s}"),
            Violation::Liveness { pending, ticks } => {
                write!(f, "liveness: {pending} operations still pending {ticks} ticks after healing")
            }
            Violation::Recovery(s) => write!(f, "recovery: {s}"),
            Violation::LeaseOverlap { a, b } => {
                write!(f, "lease-exclusive: node indices {a} and {b} both hold a leader lease")
            }
            Violation::Configuration { node, slot } => write!(
                f,
                "configuration: node index {node} counts slot {slot} in a configuration the chosen log does not give"
            ),
            Violation::Sessions { node, slot } => write!(
                f,
                "sessions: node index {node} holds another duplicate-detection table after slot {slot} than the \
                 first replica to apply it"
            ),
            Violation::BallotReuse { slot, ballot } => {
                write!(f, "unique-proposals: two values proposed for slot {slot} in ballot {ballot}")
            }
        }
    }
}

#[derive(Clone)]
struct NodeWatch {
    last_promised: Ballot,
    /// Highest ballot this node acknowledged in a Promise, Accepted or
    /// HeartbeatAck that left it.
    acknowledged: Ballot,
    checked_commit: Slot,
    checked_applied: Slot,
}

/// Incremental invariant checker for one cluster. Cloning it forks the
/// check along with the cluster it watches (a model checker does).
#[derive(Clone)]
pub struct Invariants {
    nodes: Vec<NodeWatch>,
    chosen: Vec<Option<Value>>,
    proposed: HashMap<CommandId, bytes::Bytes>,
    max_chosen_seq: HashMap<u64, u64>,
    /// Every proposal made, by (ballot, slot).
    proposals: HashMap<(Ballot, Slot), Value>,
    /// The initial configuration, α, and every change chosen, by slot.
    initial: Membership,
    alpha: Slot,
    changes: BTreeMap<Slot, Membership>,
    /// The duplicate-detection table after each applied slot, as the first
    /// replica to report that slot held it.
    /// (With the slot below which sessions were last expired.)
    sessions_at: HashMap<Slot, (Vec<SessionInfo>, Slot)>,
}

impl Invariants {
    /// A checker for `n` replicas whose initial configuration is `initial`
    /// and whose configurations take effect `alpha` slots after they are
    /// chosen.
    pub fn new(n: usize, initial: Membership, alpha: Slot) -> Invariants {
        Invariants {
            nodes: (0..n)
                .map(|_| NodeWatch {
                    last_promised: Ballot::ZERO,
                    acknowledged: Ballot::ZERO,
                    checked_commit: 0,
                    checked_applied: 0,
                })
                .collect(),
            chosen: Vec::new(),
            proposed: HashMap::new(),
            max_chosen_seq: HashMap::new(),
            proposals: HashMap::new(),
            initial,
            alpha,
            changes: BTreeMap::new(),
            sessions_at: HashMap::new(),
        }
    }

    /// The configuration the α rule gives for `slot` from the changes
    /// chosen so far.
    fn governing(&self, slot: Slot) -> &Membership {
        match slot.checked_sub(self.alpha) {
            Some(last) => self.changes.range(..=last).next_back().map_or(&self.initial, |(_, m)| m),
            None => &self.initial,
        }
    }

    /// A node joined the simulation (membership change).
    pub fn add_node(&mut self) {
        self.nodes.push(NodeWatch {
            last_promised: Ballot::ZERO,
            acknowledged: Ballot::ZERO,
            checked_commit: 0,
            checked_applied: 0,
        });
    }

    /// A client proposed this command.
    pub fn on_propose(&mut self, cmd: Command) {
        self.proposed.insert(cmd.id, cmd.payload);
    }

    /// Node `i` sent `msg`.
    pub fn on_send(&mut self, i: usize, msg: &Message) -> Result<(), Violation> {
        if let Message::Accept { ballot, first_slot, values, .. } = msg {
            for (k, v) in values.iter().enumerate() {
                let slot = first_slot + k as Slot;
                match self.proposals.get(&(*ballot, slot)) {
                    Some(have) if have != v => return Err(Violation::BallotReuse { slot, ballot: *ballot }),
                    Some(_) => {}
                    None => {
                        self.proposals.insert((*ballot, slot), v.clone());
                    }
                }
            }
        }
        let acked = match msg {
            Message::Promise { ballot, .. } | Message::Accepted { ballot, .. } => *ballot,
            _ => return Ok(()),
        };
        let w = &mut self.nodes[i];
        w.acknowledged = w.acknowledged.max(acked);
        Ok(())
    }

    /// Node `i` lost its disk and rejoins as a learner: it legitimately
    /// forgot its promises (the protocol keeps it from voting until it has
    /// caught up), and its learned prefix starts over.
    pub fn on_wipe(&mut self, i: usize) {
        let w = &mut self.nodes[i];
        w.acknowledged = Ballot::ZERO;
        w.last_promised = Ballot::ZERO;
        w.checked_commit = 0;
    }

    /// Node `i` restarted from its durable records.
    pub fn on_recover(&mut self, i: usize, r: &Replica<KvMachine>) -> Result<(), Violation> {
        let w = &mut self.nodes[i];
        if r.promised() < w.acknowledged {
            return Err(Violation::PromiseForgotten { node: i, acknowledged: w.acknowledged, recovered: r.promised() });
        }
        w.last_promised = r.promised();
        // Re-check the whole recovered chosen prefix.
        w.checked_commit = 0;
        self.check_node(i, r)
    }

    /// Check node `i` after an event.
    pub fn check_node(&mut self, i: usize, r: &Replica<KvMachine>) -> Result<(), Violation> {
        let promised = r.promised();
        let w = &mut self.nodes[i];
        if promised < w.last_promised {
            return Err(Violation::PromiseDecreased { node: i, from: w.last_promised, to: promised });
        }
        w.last_promised = promised;
        let commit = r.commit_index();
        for (slot, e) in r.log().iter_from(commit + 1) {
            if !e.chosen && e.ballot > promised {
                return Err(Violation::AcceptedAbovePromised { node: i, slot });
            }
        }
        // Slots compacted into a snapshot were checked when first learned
        // (or arrived inside a snapshot, which only a checked replica makes).
        let from = (w.checked_commit + 1).max(r.log().compacted() + 1);
        w.checked_commit = commit;
        for slot in from..=commit {
            let Some(entry) = r.log().get(slot) else {
                return Err(Violation::Agreement { slot, node: i });
            };
            let idx = (slot - 1) as usize;
            if self.chosen.len() <= idx {
                self.chosen.resize(idx + 1, None);
            }
            match &self.chosen[idx] {
                Some(v) if *v != entry.value => {
                    if std::env::var_os("SYNOD_SIM_TRACE").is_some() {
                        eprintln!(
                            "AGREEMENT slot {slot}: first learned {v:?}\n  node index {i} learned {:?} (ballot {})",
                            entry.value, entry.ballot
                        );
                    }
                    return Err(Violation::Agreement { slot, node: i });
                }
                Some(_) => {}
                None => {
                    for cmd in entry.value.commands() {
                        if self.proposed.get(&cmd.id) != Some(&cmd.payload) {
                            return Err(Violation::Validity { slot });
                        }
                        let m = self.max_chosen_seq.entry(cmd.id.client).or_default();
                        *m = (*m).max(cmd.id.seq);
                    }
                    if let Value::Reconfigure(m) = &entry.value {
                        self.changes.insert(slot, m.clone());
                    }
                    self.chosen[idx] = Some(entry.value.clone());
                }
            }
        }
        // Checked after every event, not only when the commit index moved:
        // a restart or a snapshot install changes the configurations a
        // replica holds without learning anything new.
        let me: NodeId = i as NodeId + 1;
        if r.membership().is_voter(me) && !r.is_rejoining() {
            let want = self.governing(commit + 1);
            let have = r.membership();
            if have.voters != want.voters || have.q1 != want.q1 || have.q2 != want.q2 {
                if std::env::var_os("SYNOD_SIM_TRACE").is_some() {
                    eprintln!(
                        "CONFIGURATION node index {i} at slot {}: holds {have:?}, the chosen log gives {want:?}",
                        commit + 1
                    );
                }
                return Err(Violation::Configuration { node: i, slot: commit + 1 });
            }
        }
        let applied = r.applied_index();
        if applied != self.nodes[i].checked_applied {
            self.nodes[i].checked_applied = applied;
            let table = (r.sessions(), r.sessions_expired_before());
            match self.sessions_at.entry(applied) {
                std::collections::hash_map::Entry::Occupied(e) if *e.get() != table => {
                    if std::env::var_os("SYNOD_SIM_TRACE").is_some() {
                        eprintln!("SESSIONS node index {i} at slot {applied}: {table:?}, first seen {:?}", e.get());
                    }
                    return Err(Violation::Sessions { node: i, slot: applied });
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(table);
                }
            }
        }
        Ok(())
    }

    /// The highest sequence number of `client` seen in a chosen value.
    pub fn max_chosen_seq_of(&self, client: u64) -> u64 {
        self.max_chosen_seq.get(&client).copied().unwrap_or(0)
    }
}
