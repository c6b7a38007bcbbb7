//! Single-decree Paxos (the Synod): the three roles of "Paxos Made Simple",
//! choosing one value among many proposed.
//!
//! This is the kernel that Multi-Paxos generalises to a log, and the place to
//! read the safety rule (see [`Proposer::on_reply`]). It is pure and sans-IO:
//! each role is a struct whose handlers take a message and return the reply
//! to send; addressing, retries, timers and persistence belong to the caller.
//! It must never do I/O, read a clock or block.
//!
//! Durability (see DESIGN.md): an [`Acceptor`]'s reply reflects state the
//! caller must make durable *before* sending the reply; an acceptor that
//! forgets a promise breaks safety.

use std::collections::BTreeMap;

use crate::ballot::Ballot;
use crate::quorum::Votes;
use crate::types::NodeId;

/// A Synod protocol message. The phase numbers are the paper's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<V> {
    /// Phase 1a, proposer to acceptors: "promise never to accept a ballot
    /// below `ballot`, and tell me the highest-ballot value you accepted".
    Prepare {
        /// The ballot the proposer wants to run.
        ballot: Ballot,
    },
    /// Phase 1b, acceptor to proposer: the promise, sent only if `ballot` is
    /// at least every ballot the acceptor promised before. Carries the
    /// acceptor's highest-ballot accepted proposal, which the proposer must
    /// respect.
    Promise {
        /// The ballot promised (the one from the `Prepare`).
        ballot: Ballot,
        /// The acceptor's highest-ballot accepted proposal, if any; its
        /// ballot is below `ballot`.
        accepted: Option<(Ballot, V)>,
    },
    /// Phase 2a, proposer to acceptors: "accept `value` at `ballot`". Sent only
    /// after a quorum promised `ballot`, with `value` chosen by the safety rule.
    Accept {
        /// The ballot a quorum promised.
        ballot: Ballot,
        /// The value the safety rule allows at this ballot.
        value: V,
    },
    /// Phase 2b, acceptor to proposer and learners: the acceptor accepted
    /// `value` at `ballot`, which it did only because it had promised nothing
    /// higher. A value is chosen once a quorum accepted the same ballot.
    ///
    /// Carries the value (the paper's acceptors tell learners the whole
    /// proposal): a learner has not seen the `Accept` and needs it.
    Accepted {
        /// The ballot accepted.
        ballot: Ballot,
        /// The value accepted at that ballot.
        value: V,
    },
    /// Rejection of a `Prepare` or `Accept` for `ballot`: the acceptor
    /// promised the higher ballot `promised`. Not in the paper (where the
    /// acceptor stays silent); it lets the proposer give up `ballot` and pick
    /// one above `promised` at once instead of waiting for a timeout.
    Nack {
        /// The rejected ballot.
        ballot: Ballot,
        /// The acceptor's promise, greater than `ballot`.
        promised: Ballot,
    },
}

/// The acceptor: the memory of the protocol. Its two rules are what make a
/// chosen value stay chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptor<V> {
    promised: Ballot,
    accepted: Option<(Ballot, V)>,
}

impl<V: Clone + Eq> Default for Acceptor<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone + Eq> Acceptor<V> {
    /// An acceptor that has promised and accepted nothing.
    pub fn new() -> Self {
        Acceptor { promised: Ballot::ZERO, accepted: None }
    }

    /// The highest ballot promised (or accepted); [`Ballot::ZERO`] if none.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The highest-ballot proposal accepted, if any.
    pub fn accepted(&self) -> Option<&(Ballot, V)> {
        self.accepted.as_ref()
    }

    /// Phase 1b. Promises iff `ballot >= promised`, else rejects.
    ///
    /// The paper asks for `>`; `>=` is just as safe, because ballots are
    /// unique: only the owner of `ballot` sends `Prepare(ballot)`, so an equal
    /// ballot is the same proposer asking again (a retransmission or a
    /// duplicate from the network), and answering it again changes nothing.
    /// With `>` a duplicate would draw a `Nack` and make a live proposer
    /// abandon its own ballot.
    pub fn on_prepare(&mut self, ballot: Ballot) -> Message<V> {
        if ballot >= self.promised {
            self.promised = ballot;
            self.check_invariant();
            Message::Promise { ballot, accepted: self.accepted.clone() }
        } else {
            Message::Nack { ballot, promised: self.promised }
        }
    }

    /// Phase 2b. Accepts iff `ballot >= promised` (it promised nothing
    /// higher), else rejects. Accepting `ballot` also promises it.
    pub fn on_accept(&mut self, ballot: Ballot, value: V) -> Message<V> {
        if ballot >= self.promised {
            self.promised = ballot;
            self.accepted = Some((ballot, value.clone()));
            self.check_invariant();
            Message::Accepted { ballot, value }
        } else {
            Message::Nack { ballot, promised: self.promised }
        }
    }

    /// Dispatches a proposer's message (`Prepare` or `Accept`) to its handler;
    /// other messages are not for acceptors and get no reply.
    pub fn handle(&mut self, message: Message<V>) -> Option<Message<V>> {
        match message {
            Message::Prepare { ballot } => Some(self.on_prepare(ballot)),
            Message::Accept { ballot, value } => Some(self.on_accept(ballot, value)),
            _ => None,
        }
    }

    fn check_invariant(&self) {
        // Holds because both handlers raise `promised` to any ballot they accept.
        debug_assert!(
            self.accepted.as_ref().is_none_or(|(b, _)| *b <= self.promised),
            "acceptor invariant broken: accepted ballot above promised"
        );
    }
}

/// Where a proposer is in its current ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase<V> {
    /// No ballot running (not started, or the last one was rejected).
    Idle,
    /// Phase 1: collecting promises, remembering the highest accepted
    /// proposal reported so far.
    Preparing { promised_by: Votes, highest_accepted: Option<(Ballot, V)> },
    /// Phase 2: `value` was sent in `Accept`; collecting `Accepted`.
    Accepting { value: V, accepted_by: Votes },
}

/// The proposer: tries to get a value chosen, its own if it is free to.
///
/// It must never reuse a ballot, including across restarts: the caller
/// either persists [`Proposer::ballot`] or seeds a restarted proposer with
/// [`Proposer::observe`] above anything it may have used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposer<V> {
    id: NodeId,
    quorum: usize,
    value: V,
    ballot: Ballot,
    highest_seen: Ballot,
    phase: Phase<V>,
    chosen: Option<V>,
}

impl<V: Clone + Eq> Proposer<V> {
    /// A proposer for node `id` that needs `quorum` acceptors per phase and
    /// would like `value` chosen.
    pub fn new(id: NodeId, quorum: usize, value: V) -> Self {
        assert!(quorum > 0, "a quorum needs at least one acceptor");
        Proposer {
            id,
            quorum,
            value,
            ballot: Ballot::ZERO,
            highest_seen: Ballot::ZERO,
            phase: Phase::Idle,
            chosen: None,
        }
    }

    /// The current (or last) ballot; [`Ballot::ZERO`] before the first
    /// [`Proposer::prepare`].
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// The value this proposer knows to be chosen: a quorum accepted it at
    /// this proposer's ballot.
    pub fn chosen(&self) -> Option<&V> {
        self.chosen.as_ref()
    }

    /// Records that `ballot` exists, so the next [`Proposer::prepare`] goes
    /// above it.
    pub fn observe(&mut self, ballot: Ballot) {
        self.highest_seen = self.highest_seen.max(ballot);
    }

    /// Phase 1a: starts a new ballot, above every ballot seen, and returns
    /// the `Prepare` to send to all acceptors. Any earlier ballot is dropped.
    /// `None` when no ballot is left above those seen (rounds are bounded by
    /// [`Ballot::MAX_ROUND`]).
    pub fn prepare(&mut self) -> Option<Message<V>> {
        self.ballot = self.highest_seen.max(self.ballot).next_for(self.id)?;
        self.highest_seen = self.ballot;
        self.phase = Phase::Preparing { promised_by: Votes::new(self.quorum), highest_accepted: None };
        Some(Message::Prepare { ballot: self.ballot })
    }

    /// Takes an acceptor's reply (`Promise`, `Accepted` or `Nack`) from
    /// acceptor `from`. Returns the `Accept` to send to all acceptors when
    /// this reply completes a quorum of promises. Replies for other ballots,
    /// and repeats from one acceptor, are ignored.
    pub fn on_reply(&mut self, from: NodeId, reply: Message<V>) -> Option<Message<V>> {
        match reply {
            Message::Promise { ballot, accepted } if ballot == self.ballot => {
                let Phase::Preparing { promised_by, highest_accepted } = &mut self.phase else {
                    return None;
                };
                promised_by.add(from);
                if let Some((b, v)) = accepted {
                    debug_assert!(b < ballot, "promise reports an accept at or above its ballot");
                    if highest_accepted.as_ref().is_none_or(|(hb, _)| b > *hb) {
                        *highest_accepted = Some((b, v));
                    }
                }
                if !promised_by.is_quorum() {
                    return None;
                }
                // THE SAFETY RULE. Some value may already be chosen at a
                // lower ballot: a quorum accepted it. That quorum and the one
                // that just promised share an acceptor, who reported it (or a
                // later accepted value, which by induction is the same one).
                // So propose the highest-ballot value any promiser accepted,
                // and our own value only if none accepted anything.
                let value = match highest_accepted.take() {
                    Some((_, v)) => v,
                    None => self.value.clone(),
                };
                self.phase = Phase::Accepting { value: value.clone(), accepted_by: Votes::new(self.quorum) };
                Some(Message::Accept { ballot: self.ballot, value })
            }
            Message::Accepted { ballot, value } if ballot == self.ballot => {
                if let Phase::Accepting { value: v, accepted_by } = &mut self.phase {
                    debug_assert!(value == *v, "acceptor accepted a value we did not propose");
                    accepted_by.add(from);
                    if accepted_by.is_quorum() && self.chosen.is_none() {
                        self.chosen = Some(v.clone());
                    }
                }
                None
            }
            Message::Nack { ballot, promised } => {
                self.observe(promised);
                // An acceptor promised a higher ballot, so this one may never
                // complete: give it up. The caller retries with `prepare`
                // (after a back-off, so that two proposers do not duel forever).
                if ballot == self.ballot && self.chosen.is_none() {
                    self.phase = Phase::Idle;
                }
                None
            }
            _ => None,
        }
    }
}

/// The learner: finds out that a value was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learner<V> {
    quorum: usize,
    votes: BTreeMap<Ballot, (V, Votes)>,
    learned: Option<V>,
}

impl<V: Clone + Eq> Learner<V> {
    /// A learner that counts a value chosen once `quorum` acceptors accepted
    /// it at the same ballot.
    pub fn new(quorum: usize) -> Self {
        assert!(quorum > 0, "a quorum needs at least one acceptor");
        Learner { quorum, votes: BTreeMap::new(), learned: None }
    }

    /// The chosen value, once learned.
    pub fn learned(&self) -> Option<&V> {
        self.learned.as_ref()
    }

    /// Takes an `Accepted` from acceptor `from` (other messages are ignored)
    /// and returns the chosen value once known.
    ///
    /// Votes count per ballot: acceptors that accepted the same value at
    /// different ballots do not make a quorum, because a later ballot may
    /// carry another value until one ballot reaches a quorum.
    pub fn on_accepted(&mut self, from: NodeId, message: Message<V>) -> Option<&V> {
        if let Message::Accepted { ballot, value } = message {
            let (v, voters) = self.votes.entry(ballot).or_insert_with(|| (value.clone(), Votes::new(self.quorum)));
            // Ballots are unique and a proposer sends one value per ballot.
            debug_assert!(*v == value, "two values accepted at ballot {ballot}");
            voters.add(from);
            if voters.is_quorum() {
                match &self.learned {
                    None => self.learned = Some(v.clone()),
                    // Agreement, the property the whole protocol exists for.
                    Some(l) => assert!(l == v, "two different values chosen"),
                }
            }
        }
        self.learned.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `n` fresh acceptors; the one at index `i` has id `id(i)`.
    fn acceptors(n: usize) -> Vec<Acceptor<&'static str>> {
        (0..n).map(|_| Acceptor::new()).collect()
    }

    fn id(i: usize) -> NodeId {
        i as NodeId + 1
    }

    /// Sends `msg` to the acceptors at the given indices and feeds their
    /// replies to `p`; returns what `p` wants sent next, if anything.
    fn round_trip(
        p: &mut Proposer<&'static str>,
        accs: &mut [Acceptor<&'static str>],
        to: &[usize],
        msg: &Message<&'static str>,
    ) -> Option<Message<&'static str>> {
        let mut next = None;
        for &i in to {
            let reply = accs[i].handle(msg.clone()).expect("acceptor replies");
            if let Some(m) = p.on_reply(id(i), reply) {
                next = Some(m);
            }
        }
        next
    }

    #[test]
    fn lone_proposer_gets_its_own_value_chosen() {
        let mut accs = acceptors(3);
        let mut p = Proposer::new(1, 2, "a");
        let prepare = p.prepare().unwrap();
        let accept = round_trip(&mut p, &mut accs, &[0, 1], &prepare).expect("quorum promised");
        assert_eq!(accept, Message::Accept { ballot: p.ballot(), value: "a" });
        round_trip(&mut p, &mut accs, &[0, 1], &accept);
        assert_eq!(p.chosen(), Some(&"a"));
    }

    #[test]
    fn one_promise_short_of_a_quorum_sends_no_accept() {
        let mut accs = acceptors(3);
        let mut p = Proposer::new(1, 2, "a");
        let prepare = p.prepare().unwrap();
        assert_eq!(round_trip(&mut p, &mut accs, &[0], &prepare), None);
        // A duplicate promise from the same acceptor is not a second vote.
        assert_eq!(round_trip(&mut p, &mut accs, &[0], &prepare), None);
        assert!(round_trip(&mut p, &mut accs, &[1], &prepare).is_some());
    }

    /// Paper scenario: ballot 2's value reached one acceptor only, so it was
    /// not chosen, yet ballot 3, whose quorum includes that acceptor, must
    /// carry it: the proposer cannot know that it was not chosen.
    #[test]
    fn later_ballot_carries_the_value_accepted_in_an_earlier_ballot() {
        let mut accs = acceptors(3);
        let mut p1 = Proposer::new(1, 2, "one");
        let mut p2 = Proposer::new(2, 2, "two");
        let mut p3 = Proposer::new(3, 2, "three");

        let prep1 = p1.prepare().unwrap();
        assert_eq!(p1.ballot(), Ballot::new(1, 1));
        round_trip(&mut p1, &mut accs, &[0, 1], &prep1).expect("ballot 1 prepared");

        let prep2 = p2.prepare().unwrap();
        assert_eq!(p2.ballot(), Ballot::new(1, 2));
        let accept2 = round_trip(&mut p2, &mut accs, &[1, 2], &prep2).expect("ballot 2 prepared");
        round_trip(&mut p2, &mut accs, &[2], &accept2); // reaches acceptor 3 only
        assert_eq!(p2.chosen(), None, "one acceptor is not a quorum");

        let prep3 = p3.prepare().unwrap();
        assert_eq!(p3.ballot(), Ballot::new(1, 3));
        let accept3 = round_trip(&mut p3, &mut accs, &[0, 2], &prep3).expect("ballot 3 prepared");
        assert_eq!(accept3, Message::Accept { ballot: p3.ballot(), value: "two" });
        round_trip(&mut p3, &mut accs, &[0, 2], &accept3);
        assert_eq!(p3.chosen(), Some(&"two"));
    }

    #[test]
    fn proposer_adopts_the_highest_ballot_value_among_promises() {
        let mut p = Proposer::new(9, 3, "mine");
        let Message::Prepare { ballot } = p.prepare().unwrap() else { unreachable!() };
        let promise = |accepted| Message::Promise { ballot, accepted };
        assert_eq!(p.on_reply(1, promise(Some((Ballot::new(1, 1), "old")))), None);
        assert_eq!(p.on_reply(2, promise(Some((Ballot::new(1, 2), "newer")))), None);
        let accept = p.on_reply(3, promise(None));
        assert_eq!(accept, Some(Message::Accept { ballot, value: "newer" }));
    }

    #[test]
    fn acceptor_that_promised_higher_rejects_lower_prepare_and_accept() {
        let mut a = Acceptor::new();
        let low = Ballot::new(1, 1);
        let high = Ballot::new(2, 2);
        assert!(matches!(a.on_prepare(high), Message::Promise { .. }));

        assert_eq!(a.on_prepare(low), Message::Nack { ballot: low, promised: high });
        assert_eq!(a.on_accept(low, "x"), Message::Nack { ballot: low, promised: high });
        assert_eq!(a.accepted(), None, "a rejected accept leaves no trace");
        assert_eq!(a.promised(), high, "promises never decrease");
    }

    #[test]
    fn acceptor_answers_a_repeated_prepare_the_same_way() {
        let mut a = Acceptor::<&str>::new();
        let b = Ballot::new(1, 1);
        let first = a.on_prepare(b);
        assert_eq!(a.on_prepare(b), first);
    }

    #[test]
    fn acceptor_accepts_at_or_above_its_promise_and_reports_it_in_promises() {
        let mut a = Acceptor::new();
        let b1 = Ballot::new(1, 1);
        let b2 = Ballot::new(2, 1);
        a.on_prepare(b1);
        assert_eq!(a.on_accept(b1, "x"), Message::Accepted { ballot: b1, value: "x" });
        // Accepting without a prior prepare at that ballot is allowed, and promises it.
        assert_eq!(a.on_accept(b2, "y"), Message::Accepted { ballot: b2, value: "y" });
        assert_eq!(a.promised(), b2);
        let b3 = Ballot::new(3, 2);
        assert_eq!(a.on_prepare(b3), Message::Promise { ballot: b3, accepted: Some((b2, "y")) });
    }

    #[test]
    fn nack_makes_the_next_ballot_exceed_the_rejecting_promise() {
        let mut p = Proposer::new(1, 2, "a");
        let Message::Prepare { ballot } = p.prepare().unwrap() else { unreachable!() };
        let promised = Ballot::new(7, 3);
        p.on_reply(2, Message::Nack { ballot, promised });
        // The abandoned ballot no longer collects promises.
        assert_eq!(p.on_reply(1, Message::Promise { ballot, accepted: None }), None);
        assert_eq!(p.on_reply(2, Message::Promise { ballot, accepted: None }), None);
        p.prepare().unwrap();
        assert!(p.ballot() > promised);
    }

    /// Paper scenario: two proposers race, interleaving their phases. The
    /// later ballot pre-empts the earlier one, and whatever is chosen first
    /// is what every later ballot proposes.
    #[test]
    fn racing_proposers_choose_at_most_one_value_and_the_later_adopts_it() {
        let mut accs = acceptors(3);
        let mut learner = Learner::new(2);
        let mut p = Proposer::new(1, 2, "p");
        let mut q = Proposer::new(2, 2, "q");

        // p prepares on {1,2}; q prepares on {2,3} with a higher ballot.
        let prep_p = p.prepare().unwrap();
        let accept_p = round_trip(&mut p, &mut accs, &[0, 1], &prep_p).expect("p prepared");
        let prep_q = q.prepare().unwrap();
        assert!(q.ballot() > p.ballot());
        let accept_q = round_trip(&mut q, &mut accs, &[1, 2], &prep_q).expect("q prepared");
        assert_eq!(accept_q, Message::Accept { ballot: q.ballot(), value: "q" });

        // p's accept lands on acceptor 1 only; acceptor 2 promised q and refuses.
        for i in [0, 1] {
            let reply = accs[i].handle(accept_p.clone()).expect("reply");
            learner.on_accepted(id(i), reply.clone());
            p.on_reply(id(i), reply);
        }
        assert_eq!(p.chosen(), None);
        assert_eq!(learner.learned(), None);

        // q's accept reaches {2,3}: "q" is chosen.
        for i in [1, 2] {
            let reply = accs[i].handle(accept_q.clone()).expect("reply");
            learner.on_accepted(id(i), reply.clone());
            q.on_reply(id(i), reply);
        }
        assert_eq!(q.chosen(), Some(&"q"));
        assert_eq!(learner.learned(), Some(&"q"));

        // p retries above q, hears from acceptor 1 (which holds p's own old
        // value) and acceptor 3 (which holds "q" at a higher ballot): it must
        // propose "q", and p's own value is never chosen.
        let prep_p = p.prepare().unwrap();
        assert!(p.ballot() > q.ballot());
        let accept_p = round_trip(&mut p, &mut accs, &[0, 2], &prep_p).expect("p prepared again");
        assert_eq!(accept_p, Message::Accept { ballot: p.ballot(), value: "q" });
        for i in [0, 1, 2] {
            let reply = accs[i].handle(accept_p.clone()).expect("reply");
            learner.on_accepted(id(i), reply.clone());
            p.on_reply(id(i), reply);
        }
        assert_eq!(p.chosen(), Some(&"q"));
        assert_eq!(learner.learned(), Some(&"q"));
    }

    #[test]
    fn learner_needs_a_quorum_at_one_ballot() {
        let mut l = Learner::new(2);
        let accepted = |round, value| Message::Accepted { ballot: Ballot::new(round, 1), value };
        assert_eq!(l.on_accepted(1, accepted(1, "v")), None);
        assert_eq!(l.on_accepted(2, accepted(2, "v")), None, "different ballots");
        assert_eq!(l.on_accepted(1, accepted(1, "v")), None, "same acceptor twice");
        assert_eq!(l.on_accepted(3, accepted(2, "v")), Some(&"v"));
    }

    mod agreement {
        use super::*;
        use proptest::prelude::*;

        /// A message in flight; `to_acceptor` tells which role receives it.
        #[derive(Clone, Debug)]
        struct Envelope {
            from: NodeId,
            to: NodeId,
            to_acceptor: bool,
            msg: Message<u32>,
        }

        /// Runs one schedule: each step is a kind (0 prepare, 1 lose,
        /// 2 duplicate, else deliver) and a number that picks the proposer
        /// or the in-flight message. Checks agreement, validity and the
        /// acceptor invariant after every step; returns whether some value
        /// was chosen.
        fn run(acceptor_count: usize, proposer_count: usize, steps: &[(u8, usize)]) -> bool {
            let quorum = acceptor_count / 2 + 1;
            let mut accs: Vec<Acceptor<u32>> = (0..acceptor_count).map(|_| Acceptor::new()).collect();
            let mut props: Vec<Proposer<u32>> =
                (0..proposer_count).map(|i| Proposer::new(id(i), quorum, 100 + i as u32)).collect();
            let mut learner = Learner::new(quorum);
            let mut net: Vec<Envelope> = Vec::new();
            let broadcast = |net: &mut Vec<Envelope>, from, msg: Message<u32>| {
                for a in 0..acceptor_count {
                    net.push(Envelope { from, to: id(a), to_acceptor: true, msg: msg.clone() });
                }
            };

            for &(kind, pick) in steps {
                match kind {
                    // Some proposer starts (or restarts) a ballot.
                    0 => {
                        let p = pick % proposer_count;
                        let msg = props[p].prepare().unwrap();
                        broadcast(&mut net, id(p), msg);
                    }
                    // The network loses a message.
                    1 if !net.is_empty() => {
                        net.swap_remove(pick % net.len());
                    }
                    // The network duplicates a message.
                    2 if !net.is_empty() => {
                        let e = net[pick % net.len()].clone();
                        net.push(e);
                    }
                    // The network delivers some message, in any order.
                    _ if !net.is_empty() => {
                        let e = net.swap_remove(pick % net.len());
                        let to = (e.to - 1) as usize;
                        if e.to_acceptor {
                            let reply = accs[to].handle(e.msg).expect("acceptor replies");
                            learner.on_accepted(e.to, reply.clone());
                            net.push(Envelope { from: e.to, to: e.from, to_acceptor: false, msg: reply });
                        } else if let Some(accept) = props[to].on_reply(e.from, e.msg) {
                            broadcast(&mut net, e.to, accept);
                        }
                    }
                    _ => {}
                }
                // Agreement: every proposer and the learner know one value.
                // Validity: it is one that was proposed.
                let known: BTreeSet<u32> =
                    props.iter().filter_map(|p| p.chosen().copied()).chain(learner.learned().copied()).collect();
                assert!(known.len() <= 1, "two values chosen: {known:?}");
                assert!(known.iter().all(|v| (100..100 + proposer_count as u32).contains(v)));
                for a in &accs {
                    if let Some((b, _)) = a.accepted() {
                        assert!(*b <= a.promised());
                    }
                }
            }
            learner.learned().is_some()
        }

        /// The property below would prove nothing if schedules rarely chose
        /// anything: check that a fair share of random ones do.
        #[test]
        fn random_schedules_often_choose_a_value() {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as usize
            };
            let runs = 200;
            let chosen = (0..runs)
                .filter(|_| {
                    let steps: Vec<(u8, usize)> = (0..300).map(|_| ((next() % 8) as u8, next())).collect();
                    run(3 + 2 * (next() % 2), 2 + next() % 3, &steps)
                })
                .count();
            assert!(chosen * 4 > runs, "only {chosen} of {runs} schedules chose a value");
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn no_two_values_are_ever_chosen(
                acceptor_count in prop::sample::select(vec![3usize, 5]),
                proposer_count in 2usize..=4,
                steps in prop::collection::vec((0u8..8, any::<usize>()), 0..300),
            ) {
                run(acceptor_count, proposer_count, &steps);
            }
        }
    }
}
