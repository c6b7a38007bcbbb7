//! Where a replica's outgoing records and messages wait, and its clock.
//!
//! Every role that persists a record or sends a message does it through a
//! [`Net`]: records get consecutive numbers, a reply that depends on
//! records not yet durable is held until they are (so no promise or
//! acceptance leaves before it is stored), and a message to this replica
//! itself loops back instead of going to the network. Nothing here decides
//! anything: it only keeps the order the runtime must follow.

use crate::config::Config;
use crate::io::Output;
use crate::message::Message;
use crate::record::Record;
use crate::types::{Lsn, NodeId};
use std::collections::VecDeque;

/// Where outgoing records and messages wait: records get numbers, replies
/// wait in `held` until the records they depend on are durable, messages to
/// this replica itself loop back.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    /// The number the next record gets.
    pub(crate) next_lsn: Lsn,
    /// Every record up to here is durable.
    pub(crate) durable: Lsn,
    /// Sequence number of the first record recovered (1 unless the log was
    /// truncated after a checkpoint).
    pub(crate) first_lsn: Lsn,
    /// Replies waiting for the record they depend on to be durable.
    pub(crate) held: VecDeque<(Lsn, NodeId, Message)>,
    /// Messages to this replica itself.
    pub(crate) loopback: VecDeque<Message>,
}

impl Outbox {
    /// The number of the next record.
    pub(crate) fn number(&mut self) -> Lsn {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        lsn
    }

    /// A reply that depends on every record numbered so far: given back to
    /// be sent if they are durable (or `skip`, the planted `skip-persist`
    /// bug), else held until they are.
    pub(crate) fn unless_held(&mut self, to: NodeId, msg: Message, skip: bool) -> Option<(NodeId, Message)> {
        let need = self.next_lsn - 1;
        if need <= self.durable || skip {
            Some((to, msg))
        } else {
            self.held.push_back((need, to, msg));
            None
        }
    }

    /// Every record up to `lsn` is durable: the held replies that may
    /// leave now, in the order they were held (`None` if `lsn` is old news).
    pub(crate) fn durable_up_to(&mut self, lsn: Lsn) -> Option<Vec<(NodeId, Message)>> {
        if lsn <= self.durable {
            return None;
        }
        debug_assert!(lsn < self.next_lsn, "durable({lsn}) reported for a record never emitted");
        self.durable = lsn.min(self.next_lsn - 1);
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(need, _, _)| *need <= self.durable) {
            if let Some((_, to, msg)) = self.held.pop_front() {
                released.push((to, msg));
            }
        }
        Some(released)
    }
}

/// This replica's logical clock and its one source of randomness (seeded:
/// the same inputs give the same choices).
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    /// Ticks so far.
    pub(crate) now: u64,
    /// Election jitter and catch-up peers are drawn from here.
    pub(crate) rng: fastrand::Rng,
}

/// What a role may do to the outside world: append records and send
/// messages (through the [`Outbox`]), and add to the [`Output`] (answers,
/// stats). Borrowed from the replica for one call.
pub(crate) struct Net<'a, O> {
    /// This replica: messages to it loop back.
    me: NodeId,
    /// The planted `skip-persist` bug: replies do not wait for their records.
    skip_persist: bool,
    outbox: &'a mut Outbox,
    /// What the runtime collects at the next output.
    pub(crate) out: &'a mut Output<O>,
}

impl<'a, O> Net<'a, O> {
    /// The outside world of the replica configured by `cfg`.
    pub(crate) fn new(cfg: &Config, outbox: &'a mut Outbox, out: &'a mut Output<O>) -> Net<'a, O> {
        Net { me: cfg.id, skip_persist: cfg.plant().skip_persist(), outbox, out }
    }

    /// Append a record for the runtime to make durable; returns its number.
    pub(crate) fn persist(&mut self, record: Record) -> Lsn {
        let lsn = self.outbox.number();
        self.out.persist.push((lsn, record));
        lsn
    }

    /// Send a message that depends on nothing unpersisted.
    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.dispatch(to, msg);
    }

    /// Send a reply that depends on every record persisted so far: it is
    /// held until they are durable (unless the planted bug says otherwise).
    pub(crate) fn send_after_persist(&mut self, to: NodeId, msg: Message) {
        if let Some((to, msg)) = self.outbox.unless_held(to, msg, self.skip_persist) {
            self.dispatch(to, msg);
        }
    }

    /// A message on its way: to the network, or back to this replica.
    pub(crate) fn dispatch(&mut self, to: NodeId, msg: Message) {
        if to == self.me {
            self.outbox.loopback.push_back(msg);
        } else {
            self.out.send.push((to, msg));
        }
    }
}
