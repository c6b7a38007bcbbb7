//! Messages no member could have sent, from a peer that claims to be one:
//! refused or survived, never a panic, a wrapped number or a wedged
//! cluster. (Until peers authenticate, anyone who reaches the peer port can
//! claim a member's id; see `synod_paxos::admission`.)

use proptest::prelude::*;
use synod_paxos::local::LocalCluster;
use synod_paxos::{Ballot, Command, Config, Input, KvMachine, Membership, Message, NodeId, PromisedEntry, Slot, Value};

fn cluster() -> LocalCluster<KvMachine> {
    let mut c = LocalCluster::new(3, Config::new, KvMachine::default);
    c.tick(40);
    c
}

/// Whether the cluster still chooses a fresh command, given time to get
/// over whatever it was sent: asked at whichever replica leads, again
/// while no answer comes.
fn decides(c: &mut LocalCluster<KvMachine>, client: u64) -> bool {
    for seq in 1..=30 {
        c.tick(10);
        let Some(l) = c.leader() else { continue };
        // Stamped with the commit index the proposer has seen, as the
        // runtime stamps every command: a command that claims to be older
        // than a session expiry the log chose is refused, rightly.
        let origin = c.node(l).commit_index();
        c.step(l, Input::Propose(Command::new(client, seq, KvMachine::put("k", "v")).with_origin(origin)));
        c.tick(5);
        if c.responses.iter().any(|(_, r)| r.id.client == client && r.result.is_ok()) {
            return true;
        }
    }
    false
}

/// A member other than `to`, to claim to be.
fn other(to: NodeId) -> NodeId {
    if to == 2 {
        1
    } else {
        2
    }
}

#[test]
fn a_prepare_with_an_exhausted_round_is_refused_and_the_cluster_still_decides() {
    for round in [u64::MAX, u64::MAX - 1, Ballot::MAX_ROUND + 1] {
        let mut c = cluster();
        for to in 1..=3 {
            let from = other(to);
            let ballot = Ballot::new(round, from);
            c.step(to, Input::Message { from, msg: Message::Prepare { ballot, from_slot: 1, handoff: None } });
        }
        c.deliver_all();
        for id in 1..=3 {
            assert!(c.node(id).promised().round < round, "node {id} promised round {round}");
        }
        assert_eq!(c.refused.len(), 3, "each replica refused the forged Prepare: {:?}", c.refused);
        assert!(decides(&mut c, 100), "no command chosen after a forged Prepare at round {round}");
        // And after every member restarts from its records.
        for id in 1..=3 {
            c.crash_and_recover(id, Config::new(id, vec![1, 2, 3]), KvMachine::default());
        }
        assert!(decides(&mut c, 101), "no command chosen after restarts (round {round})");
    }
}

#[test]
fn a_prepare_far_above_every_round_seen_is_refused_and_one_within_reach_is_promised() {
    // (Without leases, so that nothing but the ballot decides.)
    let mut c = LocalCluster::new(3, |id, m| Config { lease_ticks: 0, ..Config::new(id, m) }, KvMachine::default);
    c.tick(40);
    let seen = c.node(1).promised().round;
    let far = Ballot::new(seen + Ballot::MAX_ROUND_STEP + 100, 2);
    c.step(1, Input::Message { from: 2, msg: Message::Prepare { ballot: far, from_slot: 1, handoff: None } });
    assert!(c.node(1).promised() < far);
    let near = Ballot::new(seen + 5, 2);
    c.step(1, Input::Message { from: 2, msg: Message::Prepare { ballot: near, from_slot: 1, handoff: None } });
    assert_eq!(c.node(1).promised(), near, "a ballot the cluster could have reached is promised");
    assert!(decides(&mut c, 100));
}

#[test]
fn an_accept_far_beyond_the_log_does_not_panic_and_is_not_stored() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    let ballot = c.node(l).leader_ballot().unwrap();
    let follower = other(l).max(if l == 3 { 1 } else { 3 });
    for (first_slot, n) in [(1u64 << 62, 1usize), (1 << 40, 3), (u64::MAX, 2), (u64::MAX - 1, 1), (0, 1)] {
        let values = vec![Value::Noop; n];
        let msg = Message::Accept { ballot, first_slot, values, commit: first_slot };
        c.step(follower, Input::Message { from: l, msg });
    }
    c.deliver_all();
    assert!(c.node(follower).log().last_slot() < 1 << 20, "a far slot was stored");
    assert!(decides(&mut c, 100));
}

#[test]
fn reversed_empty_and_inconsistent_ranges_do_not_panic() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    let ballot = c.node(l).leader_ballot().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    let msgs = vec![
        Message::Accepted { ballot, first_slot: 9, last_slot: 3 },
        Message::Accepted { ballot, first_slot: 0, last_slot: u64::MAX },
        Message::Chosen { first_slot: u64::MAX, values: vec![Value::Noop; 3], commit: u64::MAX },
        Message::Chosen { first_slot: 5, values: vec![], commit: 7 },
        Message::Promise { ballot, from_slot: 1, entries: vec![], compacted: u64::MAX },
        Message::HeartbeatAck { ballot, seq: u64::MAX, lease: true },
        Message::Progress { commit: u64::MAX },
        Message::CatchUp { from_slot: u64::MAX },
        Message::SnapshotRequest { slot: u64::MAX, offset: u64::MAX },
        Message::SnapshotChunk { slot: 1 << 50, offset: 0, total: u64::MAX, data: vec![0; 8].into() },
        Message::SnapshotChunk { slot: 1 << 50, offset: u64::MAX, total: 16, data: vec![0; 8].into() },
        Message::SnapshotChunk { slot: 1 << 50, offset: 0, total: 4, data: vec![0; 8].into() },
        Message::ReadIndexReply { id: 0, index: u64::MAX },
        Message::RejoinReply { promised: Ballot::new(u64::MAX, f), last_slot: u64::MAX },
        Message::Forward { commands: vec![] },
    ];
    for msg in msgs {
        c.step(l, Input::Message { from: f, msg });
    }
    let promise = Message::Promise {
        ballot,
        from_slot: 2,
        entries: vec![
            PromisedEntry { slot: 1 << 62, ballot, value: Value::Noop, chosen: false },
            PromisedEntry { slot: 2, ballot, value: Value::Noop, chosen: false },
        ],
        compacted: 0,
    };
    c.step(l, Input::Message { from: f, msg: promise });
    c.deliver_all();
    assert!(decides(&mut c, 100));
}

#[test]
fn a_snapshot_declaring_more_than_allowed_is_refused() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    let total = Config::new(1, vec![1]).max_snapshot_bytes + 1;
    let msg = Message::SnapshotChunk { slot: 1 << 20, offset: 0, total, data: vec![0; 64].into() };
    c.step(f, Input::Message { from: l, msg });
    assert!(c.refused.iter().any(|(at, r)| *at == f && r.kind == "SnapshotChunk"), "{:?}", c.refused);
}

// ---- fuzzing: well-typed, hostile messages --------------------------------

/// Numbers that break careless arithmetic, and ordinary ones.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 62),
        Just(1 << 63),
        Just(Ballot::MAX_ROUND),
        0u64..64,
        any::<u64>(),
    ]
}

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![Just(0u64), 1u64..=3, Just(u64::MAX), any::<u64>()]
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (number(), node()).prop_map(|(r, n)| Ballot::new(r, n))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        (number(), number(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(c, s, p)| Value::Commands(vec![Command::new(c, s, p)].into())),
        Just(Value::Commands(Vec::new().into())),
        number().prop_map(|before| Value::ExpireSessions { before }),
        (prop::collection::vec(node(), 0..4), 0usize..5, 0usize..5)
            .prop_map(|(voters, q1, q2)| Value::Reconfigure(Membership { voters, learners: vec![], q1, q2 })),
    ]
}

fn entry() -> impl Strategy<Value = PromisedEntry> {
    (number(), ballot(), value(), any::<bool>()).prop_map(|(slot, ballot, value, chosen)| PromisedEntry {
        slot,
        ballot,
        value,
        chosen,
    })
}

fn message() -> impl Strategy<Value = Message> {
    let values = || prop::collection::vec(value(), 0..4);
    prop_oneof![
        number().prop_map(|round| Message::Ping { round }),
        (ballot(), number(), prop::option::of(ballot())).prop_map(|(ballot, from_slot, handoff)| Message::Prepare {
            ballot,
            from_slot,
            handoff
        }),
        (ballot(), number(), prop::collection::vec(entry(), 0..4), number()).prop_map(
            |(ballot, from_slot, entries, compacted)| Message::Promise { ballot, from_slot, entries, compacted }
        ),
        (ballot(), number(), values(), number()).prop_map(|(ballot, first_slot, values, commit)| Message::Accept {
            ballot,
            first_slot,
            values,
            commit
        }),
        (ballot(), number(), number()).prop_map(|(ballot, first_slot, last_slot)| Message::Accepted {
            ballot,
            first_slot,
            last_slot
        }),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Message::Nack { ballot, promised }),
        (ballot(), number()).prop_map(|(ballot, commit)| Message::Commit { ballot, commit }),
        (ballot(), number(), number(), number()).prop_map(|(ballot, commit, seq, last_slot)| Message::Heartbeat {
            ballot,
            commit,
            seq,
            last_slot
        }),
        (ballot(), number(), any::<bool>()).prop_map(|(ballot, seq, lease)| Message::HeartbeatAck {
            ballot,
            seq,
            lease
        }),
        number().prop_map(|from_slot| Message::CatchUp { from_slot }),
        (number(), values(), number()).prop_map(|(first_slot, values, commit)| Message::Chosen {
            first_slot,
            values,
            commit
        }),
        (number(), number()).prop_map(|(slot, offset)| Message::SnapshotRequest { slot, offset }),
        (number(), number(), number(), prop::collection::vec(any::<u8>(), 0..32))
            .prop_map(|(slot, offset, total, data)| Message::SnapshotChunk { slot, offset, total, data: data.into() }),
        number().prop_map(|id| Message::ReadIndex { id }),
        (number(), number()).prop_map(|(id, index)| Message::ReadIndexReply { id, index }),
        Just(Message::RejoinQuery),
        (ballot(), number()).prop_map(|(promised, last_slot)| Message::RejoinReply { promised, last_slot }),
        prop::collection::vec((number(), number()), 0..4).prop_map(|ids| Message::Forward {
            commands: ids.into_iter().map(|(c, s)| Command::new(c, s, &b"x"[..])).collect()
        }),
        (ballot(), number()).prop_map(|(ballot, commit)| Message::TimeoutNow { ballot, commit }),
        number().prop_map(|commit| Message::Progress { commit }),
    ]
}

/// Each case: a few hostile messages, each from a claimed member to
/// another, at any moment of a working cluster; then a command must still
/// be chosen. (Ballots name the claimed sender half of the time, so that
/// they pass the sender check and reach the roles.)
fn attack() -> impl Strategy<Value = Vec<(NodeId, NodeId, bool, Message)>> {
    prop::collection::vec((1u64..=3, 1u64..=3, any::<bool>(), message()), 1..8)
}

fn own_ballot(from: NodeId, msg: &mut Message) {
    match msg {
        Message::Prepare { ballot, .. }
        | Message::Accept { ballot, .. }
        | Message::Commit { ballot, .. }
        | Message::Heartbeat { ballot, .. }
        | Message::TimeoutNow { ballot, .. } => ballot.node = from,
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_messages_from_a_claimed_member_neither_panic_nor_wedge_the_cluster(attack in attack()) {
        let mut c = cluster();
        for (from, to, own, mut msg) in attack {
            if from == to {
                continue;
            }
            if own {
                own_ballot(from, &mut msg);
            }
            c.step(to, Input::Message { from, msg });
            c.tick(1);
        }
        prop_assert!(decides(&mut c, 1000));
    }
}

#[test]
fn slot_numbers_near_the_ceiling_are_refused() {
    let mut c = cluster();
    let l = c.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    let before = c.refused.len();
    c.step(f, Input::Message { from: l, msg: Message::CatchUp { from_slot: synod_paxos::log::MAX_SLOT + 1 } });
    assert_eq!(c.refused.len(), before + 1);
    let _: Slot = synod_paxos::log::MAX_SLOT;
}

/// Found by the fuzz above: a member sends another an Accept of its own
/// ballot announcing a commit index far beyond any slot proposed, and the
/// values carry a session expiry. The cluster goes on; only commands that
/// claim to predate the expiry are refused (the probe once sent commands
/// with origin 0, as no client does, and took their refusal for a wedge).
#[test]
fn a_commit_index_far_ahead_does_not_wedge_the_cluster() {
    for round in [0, 1, 2, 1 << 62, Ballot::MAX_ROUND] {
        let mut c = cluster();
        let values = vec![Value::Noop, Value::ExpireSessions { before: 1 }];
        let msg = Message::Accept { ballot: Ballot::new(round, 1), first_slot: 1, values, commit: 1 << 62 };
        c.step(2, Input::Message { from: 1, msg });
        c.tick(1);
        assert!(decides(&mut c, 1000), "wedged after an Accept in round {round}");
    }
}

/// Found by the fuzz above: a forged Accept whose session expiry lies
/// beyond the slot it stands in (here every session up to 2^64 - 1) made
/// every later command answer `SessionExpired`. No leader proposes one (it
/// expires sessions last used before a slot its learner reached), so it is
/// refused on arrival.
#[test]
fn a_session_expiry_beyond_its_slot_is_refused() {
    for before in [3, 1 << 40, u64::MAX] {
        let mut c = cluster();
        let values = vec![Value::Noop, Value::ExpireSessions { before }];
        let msg = Message::Accept { ballot: Ballot::new(2, 1), first_slot: 1, values, commit: 1 << 62 };
        c.step(2, Input::Message { from: 1, msg });
        c.tick(1);
        assert!(decides(&mut c, 1000), "wedged after a forged expiry before slot {before}");
    }
}
