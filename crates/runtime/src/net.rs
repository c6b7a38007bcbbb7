//! What the replica needs from its peer network, as a trait an embedder (or
//! the simulator) can implement, and an in-process network that implements
//! it.
//!
//! A [`Transport`] is the sending half, owned by the replica's task: it is
//! told to send (never blocking: a message it cannot pass on now it
//! drops, which Paxos tolerates, the replica resends what matters) and
//! which peers exist. The receiving half is an [`Inbox`]: whatever a
//! transport receives from a peer it puts there as `(sender, message)`, and
//! the replica's task takes it from the matching receiver. A transport must
//! only deliver a message under the id of the member that sent it (the TCP
//! transport checks each connection's hello for that).
//!
//! Two implementations: [`crate::transport::TcpTransport`], the default
//! (framed TCP, optionally TLS, reconnecting), and [`Network`], which
//! connects the members of one process directly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use synod_paxos::{Membership, Message, NodeId};
use tokio::sync::mpsc;

/// Where a transport delivers what peers sent it: `(sender, message)`.
pub type Inbox = mpsc::Sender<(NodeId, Message)>;

/// The receiving end of an [`Inbox`], which the replica's task drains.
pub type InboxReceiver = mpsc::Receiver<(NodeId, Message)>;

/// How many messages an in-process inbox holds before the sender's are
/// dropped (the TCP transport's peer queues drop likewise).
const INBOX: usize = 16 * 1024;

/// The sending side of a replica's peer network.
pub trait Transport: Send + 'static {
    /// Queue `msg` for member `to`. Must not block; drops the message if it
    /// cannot be queued, or if `to` is not a known peer.
    fn send(&mut self, to: NodeId, msg: Message);

    /// Talk to member `id` at `addr` from now on (a member being added, or
    /// one that moved), and accept what it sends. A transport without
    /// addresses ignores `addr`.
    fn set_peer(&mut self, id: NodeId, addr: SocketAddr);

    /// Stop talking to member `id` (it was removed) and refuse what it
    /// sends.
    fn remove_peer(&mut self, id: NodeId);

    /// The latest configuration and the reconfiguration window α, for
    /// nodes that ask to join (see [`crate::join`]). Default: nobody asks.
    fn publish(&mut self, _membership: &Membership, _alpha: u64) {}

    /// Whether a peer refused this member because it was removed from the
    /// cluster. Default: no transport told it so.
    fn removed(&self) -> bool {
        false
    }
}

/// Members of one process connected directly: each member's transport puts
/// messages straight into the others' inboxes, unencoded.
///
/// For tests, for the simulator, and for an embedder that runs every member
/// in one process. A member can be cut off ([`Network::isolate`]) and
/// reconnected ([`Network::heal`]) to test what the cluster does without
/// it.
#[derive(Clone, Default)]
pub struct Network {
    inner: Arc<Mutex<Members>>,
}

#[derive(Default)]
struct Members {
    inboxes: BTreeMap<NodeId, Inbox>,
    isolated: BTreeSet<NodeId>,
    /// Per member, the peers it stopped talking to (both ways).
    removed: BTreeMap<NodeId, BTreeSet<NodeId>>,
}

impl Members {
    fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.removed.get(&a).is_some_and(|r| r.contains(&b))
    }
}

impl Network {
    /// A network with no members yet.
    pub fn new() -> Network {
        Network::default()
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // Nothing panics while the lock is held.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects member `id` (again, if it was connected before: a restarted
    /// member gets a fresh inbox) and returns its transport and the
    /// receiver of its inbox, for [`crate::Node::start_with`]. Its peers are
    /// every other member of the network until told otherwise.
    pub fn join(&self, id: NodeId) -> (MemTransport, InboxReceiver) {
        let (tx, rx) = mpsc::channel(INBOX);
        let mut net = self.lock();
        net.inboxes.insert(id, tx);
        net.removed.remove(&id);
        drop(net);
        (MemTransport { network: self.clone(), me: id }, rx)
    }

    /// Drops every message to or from `id` until [`Network::heal`].
    pub fn isolate(&self, id: NodeId) {
        self.lock().isolated.insert(id);
    }

    /// Delivers `id`'s messages again.
    pub fn heal(&self, id: NodeId) {
        self.lock().isolated.remove(&id);
    }
}

/// One member's transport on a [`Network`].
pub struct MemTransport {
    network: Network,
    me: NodeId,
}

impl Transport for MemTransport {
    fn send(&mut self, to: NodeId, msg: Message) {
        if to == self.me {
            return;
        }
        let inbox = {
            let net = self.network.lock();
            let isolated = net.isolated.contains(&self.me) || net.isolated.contains(&to);
            if isolated || net.cut(self.me, to) || net.cut(to, self.me) {
                return;
            }
            net.inboxes.get(&to).cloned()
        };
        if let Some(inbox) = inbox {
            // A full or closed inbox (a member that stopped) loses it.
            let _ = inbox.try_send((self.me, msg));
        }
    }

    fn set_peer(&mut self, id: NodeId, _addr: SocketAddr) {
        if let Some(r) = self.network.lock().removed.get_mut(&self.me) {
            r.remove(&id);
        }
    }

    fn remove_peer(&mut self, id: NodeId) {
        self.network.lock().removed.entry(self.me).or_default().insert(id);
    }

    /// Whether a member of the network stopped talking to this one, as a
    /// TCP peer answers a removed member's connection with "removed".
    fn removed(&self) -> bool {
        self.network.lock().removed.values().any(|cut| cut.contains(&self.me))
    }
}
