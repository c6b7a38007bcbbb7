//! gRPC calls counted as go-grpc-prometheus counts them for etcd:
//! `grpc_server_started_total` and `grpc_server_handled_total`, labelled
//! `grpc_type`, `grpc_service`, `grpc_method` (and `grpc_code` once
//! handled), as a tower layer in front of every service.
//!
//! A call is handled when its status is known: at once for a
//! trailers-only answer (the status in the response headers, as most
//! errors are sent), else when the body's trailers pass, or `Canceled` when
//! the body is dropped before them (the client went away). Requests that
//! are not gRPC (HTTP on the same port) are not counted.
//!
//! Every etcd method's counters are made at start, as etcd's are (so every
//! series exists, at zero, before its first call), and looked up in a table
//! that never changes: counting a call takes no lock. A path that is none
//! of etcd's methods is not counted (it is answered Unimplemented).

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Code;
use tower::{Layer, Service};

/// How a method streams, as go-grpc-prometheus names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Unary,
    ServerStream,
    BidiStream,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Unary => "unary",
            Kind::ServerStream => "server_stream",
            Kind::BidiStream => "bidi_stream",
        }
    }
}

/// Every method Synod serves, by service, with how it streams (etcd's
/// rpc.proto, v3lock.proto and v3election.proto).
const METHODS: &[(&str, &[(&str, Kind)])] = &[
    (
        "etcdserverpb.KV",
        &[
            ("Range", Kind::Unary),
            ("Put", Kind::Unary),
            ("DeleteRange", Kind::Unary),
            ("Txn", Kind::Unary),
            ("Compact", Kind::Unary),
        ],
    ),
    ("etcdserverpb.Watch", &[("Watch", Kind::BidiStream)]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", Kind::Unary),
            ("LeaseRevoke", Kind::Unary),
            ("LeaseKeepAlive", Kind::BidiStream),
            ("LeaseTimeToLive", Kind::Unary),
            ("LeaseLeases", Kind::Unary),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", Kind::Unary),
            ("MemberRemove", Kind::Unary),
            ("MemberUpdate", Kind::Unary),
            ("MemberList", Kind::Unary),
            ("MemberPromote", Kind::Unary),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", Kind::Unary),
            ("Status", Kind::Unary),
            ("Defragment", Kind::Unary),
            ("Hash", Kind::Unary),
            ("HashKV", Kind::Unary),
            ("Snapshot", Kind::ServerStream),
            ("MoveLeader", Kind::Unary),
            ("Downgrade", Kind::Unary),
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            ("AuthEnable", Kind::Unary),
            ("AuthDisable", Kind::Unary),
            ("AuthStatus", Kind::Unary),
            ("Authenticate", Kind::Unary),
            ("UserAdd", Kind::Unary),
            ("UserGet", Kind::Unary),
            ("UserList", Kind::Unary),
            ("UserDelete", Kind::Unary),
            ("UserChangePassword", Kind::Unary),
            ("UserGrantRole", Kind::Unary),
            ("UserRevokeRole", Kind::Unary),
            ("RoleAdd", Kind::Unary),
            ("RoleGet", Kind::Unary),
            ("RoleList", Kind::Unary),
            ("RoleDelete", Kind::Unary),
            ("RoleGrantPermission", Kind::Unary),
            ("RoleRevokePermission", Kind::Unary),
        ],
    ),
    ("v3lockpb.Lock", &[("Lock", Kind::Unary), ("Unlock", Kind::Unary)]),
    (
        "v3electionpb.Election",
        &[
            ("Campaign", Kind::Unary),
            ("Proclaim", Kind::Unary),
            ("Leader", Kind::Unary),
            ("Observe", Kind::ServerStream),
            ("Resign", Kind::Unary),
        ],
    ),
];

/// Every gRPC status code, in code order (its number is its index).
const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// One method's counters.
#[derive(Debug)]
struct Method {
    started: IntCounter,
    /// By code number.
    handled: Vec<IntCounter>,
}

impl Method {
    fn handled(&self, code: Code) {
        // Every code tonic can name is in CODES, in number order.
        if let Some(c) = self.handled.get(code as usize) {
            c.inc();
        }
    }
}

/// The gRPC counters and the layer that feeds them. Cloning shares them.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    /// Every etcd method by path (`/etcdserverpb.KV/Range`).
    methods: Arc<HashMap<String, Arc<Method>>>,
}

impl GrpcMetrics {
    /// The counters, registered in `registry`, every etcd method's made.
    pub fn new(registry: &Registry) -> Result<GrpcMetrics, prometheus::Error> {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
            &labels,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        let mut methods = HashMap::new();
        for (service, list) in METHODS {
            for (method, kind) in list.iter() {
                let m = Method {
                    started: started.with_label_values(&[kind.label(), service, method]),
                    handled: CODES
                        .iter()
                        .map(|&c| {
                            handled.with_label_values(&[kind.label(), service, method, crate::status::go_code_name(c)])
                        })
                        .collect(),
                };
                methods.insert(format!("/{service}/{method}"), Arc::new(m));
            }
        }
        Ok(GrpcMetrics { methods: Arc::new(methods) })
    }

    /// The tower layer that counts the calls through it.
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics: self.clone() }
    }

    /// The counters of the method at `path`, if it is one of etcd's. A
    /// call of any other path is answered Unimplemented and not counted
    /// (as grpc-go's interceptors never see one): a series per path a
    /// client makes up would let it grow the registry without bound.
    fn method(&self, path: &str) -> Option<Arc<Method>> {
        self.methods.get(path).cloned()
    }
}

/// Counts the gRPC calls of the service it wraps ([`GrpcMetrics`]).
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted { inner, metrics: self.metrics.clone() }
    }
}

/// A service whose gRPC calls are counted.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    metrics: GrpcMetrics,
}

/// Whether a request is a gRPC call (its content type says so).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The status code a `grpc-status` header or trailer carries.
fn status_in(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(Code::from_i32(value.trim().parse().ok()?))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Counted<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = is_grpc(req.headers()).then(|| self.metrics.method(req.uri().path())).flatten();
        if let Some(m) = &method {
            m.started.inc();
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            let pending = match method {
                Some(m) => match status_in(response.headers()) {
                    Some(code) => {
                        m.handled(code);
                        None
                    }
                    None => Some(m),
                },
                None => None,
            };
            Ok(response.map(|inner| CountedBody { inner, pending }))
        })
    }
}

/// A gRPC response's body, counting its call as handled once its status
/// passes.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    /// The call's counters, until its status is seen.
    pending: Option<Arc<Method>>,
}

impl<B> CountedBody<B> {
    fn handled(&mut self, code: Code) {
        if let Some(m) = self.pending.take() {
            m.handled(code);
        }
    }
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_in) {
                    self.handled(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.handled(Code::Unknown),
            // Ended with no status: not a well-formed gRPC answer.
            Poll::Ready(None) => self.handled(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        // Dropped before its status went out: the client went away.
        self.handled(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_sits_at_its_number_and_is_named_as_grpc_go_names_it() {
        for (i, &c) in CODES.iter().enumerate() {
            assert_eq!(c as usize, i);
            assert_eq!(Code::from_i32(i as i32), c);
        }
        assert_eq!(crate::status::go_code_name(Code::Cancelled), "Canceled");
        assert_eq!(crate::status::go_code_name(Code::Ok), "OK");
    }

    #[test]
    fn etcds_methods_are_counted_from_zero_before_any_call() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry).unwrap();
        m.method("/etcdserverpb.KV/Range").unwrap().handled(Code::NotFound);
        assert!(m.method("/made.Up/Method").is_none(), "a path no one serves gets no series");
        let text = String::from_utf8({
            let mut out = Vec::new();
            prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut out).unwrap();
            out
        })
        .unwrap();
        assert!(text.contains(
            r#"grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 0"#
        ));
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_code="NotFound",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 1"#
        ));
    }
}
