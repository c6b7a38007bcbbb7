//! etcd's Watch service: many watchers multiplexed on one bidirectional
//! stream, each delivered every change of its key range exactly once, in
//! revision order.
//!
//! Each stream is one task. It owns its watchers and takes applied events
//! from the [`crate::state::watch_hub::WatchHub`]; every watcher remembers the next revision it
//! wants (`next`), and a batch is delivered to it only from there on, so
//! nothing arrives twice. When the watcher wants a revision older than the
//! next batch (it asked for history with `start_revision`, or the stream fell
//! behind the hub's backlog), the task first reads the missing revisions from
//! the store, in bounded chunks, so nothing is lost either. If the store has
//! compacted them away the watcher is cancelled with `compact_revision` set,
//! as etcd does, and the client may start again from there.
//!
//! The events come from this member's applied log, which is the same log on
//! every member: a client that reconnects to another member and asks for
//! `start_revision` = its last revision + 1 sees the same events from there.
//!
//! Memory per stream is bounded: responses go out through a small channel,
//! and while the client does not read them the task waits, misses hub
//! batches rather than holding them, and catches up from the store later.

use crate::context::Context;
use crate::state::watch_hub::Batch;
use crate::status;
use prost::Message;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use synod_etcd_api::etcdserverpb::watch_create_request::FilterType;
use synod_etcd_api::etcdserverpb::watch_request::RequestUnion;
use synod_etcd_api::etcdserverpb::watch_server::Watch;
use synod_etcd_api::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};
use synod_kv::pb::Event;
use tokio::sync::{broadcast, mpsc};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

/// etcd's reason for refusing a client-chosen id already in use.
pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// The reason a create past `--max-watchers-per-stream` is refused with.
pub const TOO_MANY_WATCHERS: &str = "etcdserver: too many watchers on this stream";
/// The watch id of a response that is not about one watcher (a progress
/// reply to the whole stream, a refused create), as etcd's
/// `clientv3.InvalidWatchID`.
pub const STREAM_WATCH_ID: i64 = -1;
/// Most revisions read from the store in one step of a catch-up.
const CATCH_UP_REVISIONS: i64 = 1000;
/// Responses queued for one client before the stream task waits for it.
const OUTBOX: usize = 64;

/// The Watch service of one member.
#[derive(Clone)]
pub struct WatchService {
    ctx: Arc<Context>,
    max_watchers: usize,
}

impl WatchService {
    /// The service over a member's context, with the default cap on
    /// watchers per stream ([`crate::config::DEFAULT_MAX_WATCHERS_PER_STREAM`]).
    pub fn new(ctx: Arc<Context>) -> WatchService {
        WatchService { ctx, max_watchers: crate::config::DEFAULT_MAX_WATCHERS_PER_STREAM }
    }

    /// The same service with at most `max` watchers on one stream.
    pub fn with_max_watchers(self, max: usize) -> WatchService {
        WatchService { max_watchers: max, ..self }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        // Who the stream belongs to is asked again at every create, as etcd
        // does: the auth store may change while a stream is open.
        let metadata = request.metadata().clone();
        let certs = request.peer_certs();
        let inbound = request.into_inner();
        let (out, rx) = mpsc::channel(OUTBOX);
        let stream = WatchStream {
            metadata,
            certs,
            ctx: self.ctx.clone(),
            feed: self.ctx.watch_hub.subscribe(),
            out,
            watchers: BTreeMap::new(),
            max_watchers: self.max_watchers,
            next_id: 0,
            position: 0,
        };
        tokio::spawn(stream.run(inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The keys a watcher covers, with etcd's rules for `range_end`.
#[derive(Clone, Debug)]
struct KeyRange {
    key: Vec<u8>,
    /// Empty: the single key; `[0]`: every key from `key` on; otherwise
    /// `key..range_end`.
    range_end: Vec<u8>,
}

impl KeyRange {
    fn new(mut key: Vec<u8>, range_end: Vec<u8>) -> KeyRange {
        // etcd: an empty key is the smallest key.
        if key.is_empty() {
            key = vec![0];
        }
        KeyRange { key, range_end }
    }

    fn contains(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key.as_slice(),
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }
}

/// One watcher on a stream.
#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    /// The next revision this watcher has not been sent yet.
    next: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
}

impl Watcher {
    /// Whether an event goes to this watcher, and in what form.
    fn select(&self, event: &Event) -> Option<Event> {
        let kv = event.kv.as_ref()?;
        if kv.mod_revision < self.next || !self.range.contains(&kv.key) {
            return None;
        }
        let is_put = event.r#type == synod_kv::pb::EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return None;
        }
        let mut event = event.clone();
        if !self.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }
}

/// The stream task stops: the client went away, or the member is stopping.
struct Stop;

/// One client's watch stream.
struct WatchStream {
    /// The stream's request metadata (its auth token).
    metadata: tonic::metadata::MetadataMap,
    /// The client's verified certificates, if it sent any.
    certs: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
    ctx: Arc<Context>,
    feed: broadcast::Receiver<Arc<Batch>>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    /// Creates past this many watchers are refused.
    max_watchers: usize,
    next_id: i64,
    /// Every watcher has been sent every event up to this revision.
    position: i64,
}

impl WatchStream {
    async fn run(mut self, mut inbound: Streaming<WatchRequest>) {
        let Ok(current) = self.ctx.handle.with_state(|m| m.kv().revision()).await else {
            return;
        };
        self.position = current;
        let _stopped: Result<(), Stop> = self.serve(&mut inbound).await;
    }

    async fn serve(&mut self, inbound: &mut Streaming<WatchRequest>) -> Result<(), Stop> {
        let mut progress = tokio::time::interval(self.ctx.watch_progress_interval);
        progress.tick().await;
        // A client that closes its side of the stream (grpc-go's CloseSend,
        // or the HTTP gateway at the end of a request body) still hears its
        // watchers, as etcd's recvLoop ends without ending the stream; the
        // stream ends when the client cancels the call.
        let mut inbound_open = true;
        loop {
            tokio::select! {
                biased;
                _ = self.out.closed() => return Err(Stop),
                request = inbound.message(), if inbound_open => match request {
                    Ok(Some(request)) => self.on_request(request).await?,
                    Ok(None) => inbound_open = false,
                    Err(e) => {
                        // etcd's Watch returns its recvLoop's error: a
                        // request over the decoding limit ends the stream
                        // with grpc-go's ResourceExhausted (see
                        // crate::decode_limit). A client that went away
                        // hears nothing either way.
                        debug!(error = %e, "watch stream ended by the client");
                        let _ = self.out.send(Err(e)).await;
                        return Err(Stop);
                    }
                },
                batch = self.feed.recv() => match batch {
                    Ok(batch) => self.deliver(&batch).await?,
                    // Missed batches show as a gap before the next one,
                    // which the watchers then read from the store.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(missed = n, "watch stream fell behind; it will catch up from the store")
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop),
                },
                _ = progress.tick() => self.notify_progress().await?,
            }
        }
    }

    async fn send(&self, mut resp: WatchResponse, revision: i64) -> Result<(), Stop> {
        let header = resp.header.get_or_insert_with(ResponseHeader::default);
        header.revision = revision;
        self.ctx.fill(&mut resp.header);
        self.out.send(Ok(resp)).await.map_err(|_| Stop)
    }

    /// etcd's `isWatchPermitted`: the caller must be able to read the
    /// watched keys; the refusal's reason is etcd's, the gRPC error as Go
    /// prints it (`rpc error: code = PermissionDenied desc = etcdserver:
    /// permission denied`).
    fn permitted(&self, key: &[u8], range_end: &[u8]) -> Result<(), String> {
        use crate::auth::AuthError as E;
        let caller = self.ctx.caller_from(&self.metadata, self.certs.clone()).map_err(|s| status::go_error_text(&s))?;
        let key = if key.is_empty() { &[0u8][..] } else { key };
        match self.ctx.auth.current().check_read(&caller.unwrap_or_default(), key, range_end) {
            Ok(()) => Ok(()),
            Err(e @ (E::InvalidAuthToken | E::AuthOldRevision | E::UserEmpty)) => {
                Err(status::go_error_text(&status::auth(e)))
            }
            Err(_) => Err(status::go_error_text(&status::auth(E::PermissionDenied))),
        }
    }

    async fn on_request(&mut self, request: WatchRequest) -> Result<(), Stop> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                if let Err(reason) = self.permitted(&create.key, &create.range_end) {
                    let resp = WatchResponse {
                        watch_id: STREAM_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: reason,
                        ..Default::default()
                    };
                    return self.send(resp, self.position).await;
                }
                let id = if create.watch_id != 0 { create.watch_id } else { self.free_id() };
                let refusal = if self.watchers.contains_key(&id) {
                    Some(DUPLICATE_WATCH_ID)
                } else if self.watchers.len() >= self.max_watchers {
                    Some(TOO_MANY_WATCHERS)
                } else {
                    None
                };
                if let Some(reason) = refusal {
                    // etcd answers a refused create with no watch id (-1).
                    let resp = WatchResponse {
                        watch_id: STREAM_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: reason.into(),
                        ..Default::default()
                    };
                    return self.send(resp, self.position).await;
                }
                let Ok((current, compacted)) =
                    self.ctx.handle.with_state(|m| (m.kv().revision(), m.kv().compact_revision())).await
                else {
                    return Err(Stop);
                };
                let watcher = Watcher {
                    range: KeyRange::new(create.key, create.range_end),
                    next: if create.start_revision > 0 { create.start_revision } else { current + 1 },
                    no_put: create.filters.contains(&(FilterType::Noput as i32)),
                    no_delete: create.filters.contains(&(FilterType::Nodelete as i32)),
                    prev_kv: create.prev_kv,
                    fragment: create.fragment,
                    progress_notify: create.progress_notify,
                };
                let start = watcher.next;
                self.watchers.insert(id, watcher);
                let created = WatchResponse { watch_id: id, created: true, ..Default::default() };
                self.send(created, current).await?;
                if start < compacted {
                    return self.cancel_compacted(id, compacted).await;
                }
                if start <= current {
                    self.catch_up(id, current).await?;
                }
                Ok(())
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                // etcd says nothing about an id it does not know.
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    let resp = WatchResponse { watch_id: cancel.watch_id, canceled: true, ..Default::default() };
                    self.send(resp, self.position).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                let resp = WatchResponse { watch_id: STREAM_WATCH_ID, ..Default::default() };
                self.send(resp, self.position).await
            }
            None => Ok(()),
        }
    }

    /// The lowest id not in use, from a counter as etcd assigns them.
    fn free_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_id) {
            self.next_id += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends a batch's events to every watcher that wants them, catching up
    /// first any watcher that wants revisions from before the batch.
    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else { continue };
            if w.next > batch.to {
                continue;
            }
            if w.next < batch.from && !self.catch_up(id, batch.from - 1).await? {
                continue;
            }
            let Some(w) = self.watchers.get_mut(&id) else { continue };
            let events: Vec<Event> = batch.events.iter().filter_map(|e| w.select(e)).collect();
            w.next = batch.to + 1;
            let fragment = w.fragment;
            self.send_events(id, events, fragment, batch.to).await?;
        }
        self.position = self.position.max(batch.to);
        Ok(())
    }

    /// Reads a watcher's events up to `upto` from the store and sends them.
    /// Returns false if the watcher was cancelled because the store has
    /// compacted revisions it wanted.
    async fn catch_up(&mut self, id: i64, upto: i64) -> Result<bool, Stop> {
        loop {
            let Some(w) = self.watchers.get(&id) else { return Ok(false) };
            if w.next > upto {
                return Ok(true);
            }
            let (from, to) = (w.next, upto.min(w.next + CATCH_UP_REVISIONS - 1));
            let range = w.range.clone();
            let read = self
                .ctx
                .handle
                .with_state(move |m| {
                    let kv = m.kv();
                    let events = kv.events(from, to).map(|all| {
                        all.into_iter().filter(|e| e.kv.as_ref().is_some_and(|kv| range.contains(&kv.key))).collect()
                    });
                    (events, kv.compact_revision())
                })
                .await;
            let (events, compacted): (Result<Vec<Event>, _>, i64) = read.map_err(|_| Stop)?;
            let Ok(events) = events else {
                self.cancel_compacted(id, compacted).await?;
                return Ok(false);
            };
            let w = self.watchers.get_mut(&id).expect("the watcher was there before the read");
            let events: Vec<Event> = events.iter().filter_map(|e| w.select(e)).collect();
            w.next = to + 1;
            let fragment = w.fragment;
            self.send_events(id, events, fragment, to).await?;
        }
    }

    /// A watcher whose next revision has been compacted away is canceled
    /// as etcd 3.4 cancels it: `compact_revision` set, no `cancel_reason`,
    /// and a header with no revision (etcd's watch response for it carries
    /// revision 0).
    async fn cancel_compacted(&mut self, id: i64, compacted: i64) -> Result<(), Stop> {
        self.watchers.remove(&id);
        let mut resp =
            WatchResponse { watch_id: id, canceled: true, compact_revision: compacted, ..Default::default() };
        self.ctx.fill(&mut resp.header);
        if let Some(header) = resp.header.as_mut() {
            header.revision = 0;
        }
        self.out.send(Ok(resp)).await.map_err(|_| Stop)
    }

    /// Sends one watcher's events of some whole revisions: one response, or,
    /// if the watcher asked for fragments and it is larger than a request may
    /// be, several, all but the last marked `fragment`.
    async fn send_events(&self, id: i64, events: Vec<Event>, fragment: bool, revision: i64) -> Result<(), Stop> {
        if events.is_empty() {
            return Ok(());
        }
        let limit = self.ctx.max_request_bytes;
        if !fragment || events.iter().map(|e| e.encoded_len()).sum::<usize>() <= limit {
            return self.send(WatchResponse { watch_id: id, events, ..Default::default() }, revision).await;
        }
        let mut parts: Vec<Vec<Event>> = vec![Vec::new()];
        let mut size = 0;
        for event in events {
            let len = event.encoded_len();
            let last = parts.last_mut().expect("never empty");
            if !last.is_empty() && size + len > limit {
                parts.push(Vec::new());
                size = 0;
            }
            size += len;
            parts.last_mut().expect("never empty").push(event);
        }
        let n = parts.len();
        for (i, events) in parts.into_iter().enumerate() {
            let resp = WatchResponse { watch_id: id, events, fragment: i + 1 < n, ..Default::default() };
            self.send(resp, revision).await?;
        }
        Ok(())
    }

    /// etcd's progress notification: every watcher that asked for it learns
    /// that it has everything up to the stream's position.
    async fn notify_progress(&self) -> Result<(), Stop> {
        for (id, w) in &self.watchers {
            if w.progress_notify {
                self.send(WatchResponse { watch_id: *id, ..Default::default() }, self.position).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_kv::pb::{EventType, KeyValue};

    fn event(key: &str, rev: i64, put: bool) -> Event {
        Event {
            r#type: if put { EventType::Put } else { EventType::Delete }.into(),
            kv: Some(KeyValue { key: key.into(), mod_revision: rev, ..Default::default() }),
            prev_kv: Some(KeyValue { key: key.into(), ..Default::default() }),
        }
    }

    fn watcher(key: &str, range_end: &[u8]) -> Watcher {
        Watcher {
            range: KeyRange::new(key.into(), range_end.to_vec()),
            next: 5,
            no_put: false,
            no_delete: false,
            prev_kv: false,
            fragment: false,
            progress_notify: false,
        }
    }

    #[test]
    fn key_ranges_follow_etcd_rules() {
        let single = KeyRange::new(b"a".to_vec(), vec![]);
        assert!(single.contains(b"a") && !single.contains(b"ab"));
        let from = KeyRange::new(b"b".to_vec(), vec![0]);
        assert!(from.contains(b"b") && from.contains(b"zz") && !from.contains(b"a"));
        let range = KeyRange::new(b"a".to_vec(), b"c".to_vec());
        assert!(range.contains(b"a") && range.contains(b"bz") && !range.contains(b"c"));
        let everything = KeyRange::new(vec![], vec![0]);
        assert!(everything.contains(b"\x00") && everything.contains(b"anything"));
    }

    #[test]
    fn watchers_take_only_new_matching_events_with_their_filters() {
        let mut w = watcher("k", &[]);
        assert!(w.select(&event("k", 4, true)).is_none(), "already sent");
        assert!(w.select(&event("other", 5, true)).is_none());
        let got = w.select(&event("k", 5, true)).unwrap();
        assert!(got.prev_kv.is_none(), "prev_kv only when asked for");
        w.prev_kv = true;
        assert!(w.select(&event("k", 5, true)).unwrap().prev_kv.is_some());
        w.no_put = true;
        assert!(w.select(&event("k", 6, true)).is_none());
        assert!(w.select(&event("k", 6, false)).is_some());
        w.no_delete = true;
        assert!(w.select(&event("k", 6, false)).is_none());
    }
}
