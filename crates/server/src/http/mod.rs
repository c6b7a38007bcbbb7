//! HTTP beside gRPC, as etcd 3.5 serves it: on every client URL (on the
//! same listener, inside TLS for an https:// URL, HTTP/1.1 and HTTP/2
//! both) `/health`, `/livez`, `/readyz`, `/version` and `/metrics`; on
//! every `--listen-metrics-urls` URL `/metrics` and the health endpoints.
//!
//! A request is gRPC when its content type says so (`application/grpc`);
//! everything else comes here. Health is computed from the member's real
//! state, never cached: an alarm raised in the replicated state, a leader
//! this member hears (the replica's status), and a read through the
//! protocol (linearizable unless the caller asks for `serializable=true`),
//! each as etcd 3.5 checks it, with etcd's JSON and status codes (200, or
//! 503 with the reason). Synod follows 3.5 rather than 3.4 because it
//! reports 3.5.0 as its version everywhere else, and because 3.5's answers
//! are a superset of 3.4's: the same codes and `health` field, plus a
//! `reason`, and the `/livez` and `/readyz` probes Kubernetes uses.
//!
//! What this module must never do: change state (every check is a read),
//! or answer "healthy" without having asked the replica.
//!
//! Beside it, the rest of what is served over HTTP:
//! * [`gateway`]: etcd's HTTP/JSON gateway (`/v3/kv/range`, `/v3/watch`,
//!   ...), routed by the annotations of etcd's API and served by calling
//!   the gRPC services in process;
//! * [`metrics`]: the member's Prometheus metrics, which `/metrics` serves;
//!   [`grpc_metrics`]: gRPC calls counted as etcd counts them.

pub mod gateway;
pub mod grpc_metrics;
pub mod metrics;

use crate::alarm;
use crate::context::Context;
use crate::http::gateway::Gateway;
use crate::http::metrics::ServerMetrics;
use crate::services::maintenance::ETCD_VERSION;
use crate::state::machine::Query;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::any;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tonic::service::Routes;

/// What the HTTP endpoints need of the member.
#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("timeout", &self.inner.timeout).finish_non_exhaustive()
    }
}

struct Inner {
    ctx: Arc<Context>,
    metrics: Arc<ServerMetrics>,
    /// How long a check's read may take (etcd's request timeout).
    timeout: Duration,
}

impl Http {
    /// The endpoints of a member: its context, its metrics, and how long a
    /// health check's read may take.
    pub fn new(ctx: Arc<Context>, metrics: Arc<ServerMetrics>, timeout: Duration) -> Http {
        Http { inner: Arc::new(Inner { ctx, metrics, timeout }) }
    }

    /// etcd's request timeout: 5 s plus two election timeouts
    /// (`ServerConfig.ReqTimeout`), how long `/health`'s read may take.
    pub fn request_timeout(election_timeout: Duration) -> Duration {
        Duration::from_secs(5) + 2 * election_timeout
    }
}

/// The routes of a client URL: the gRPC services in `grpc`, and the HTTP
/// endpoints, with etcd's CORS headers (etcd's default `--cors '*'`).
/// Anything else is answered as etcd does: gRPC with Unimplemented, HTTP
/// with 404.
pub fn client_routes(grpc: Routes, http: Http) -> Routes {
    let max_message_bytes = http.inner.ctx.max_request_bytes + crate::config::GRPC_OVERHEAD_BYTES;
    // Gateway calls are gRPC calls to the metrics, as etcd's gateway's
    // calls to its own gRPC server are.
    let counted = tower::Layer::layer(&http.inner.metrics.grpc.layer(), grpc.clone());
    let gateway = Gateway::over(counted, max_message_bytes);
    let endpoints = axum::Router::new()
        .route("/version", any(version))
        .merge(health_routes())
        .merge(gateway_routes(gateway))
        .layer(axum::middleware::map_response(with_cors))
        .with_state(http);
    Routes::from(grpc.into_axum_router().merge(endpoints).fallback(client_fallback))
}

/// etcd's HTTP/JSON gateway ([`crate::http::gateway`]) under `/v3/` and, as
/// etcd 3.4 serves it, `/v3beta/`. An OPTIONS preflight is answered 200
/// here, before the gateway, as etcd's access controller answers it.
fn gateway_routes(gateway: Gateway) -> axum::Router<Http> {
    let serve = move |request: Request<Body>| {
        let gateway = gateway.clone();
        async move {
            if request.method() == Method::OPTIONS {
                return response(StatusCode::OK, "text/plain; charset=utf-8", Body::empty());
            }
            gateway.serve(request).await.map(Body::new)
        }
    };
    axum::Router::new().route("/v3/{*rest}", any(serve.clone())).route("/v3beta/{*rest}", any(serve))
}

/// The routes of a `--listen-metrics-urls` URL: `/metrics` and the health
/// endpoints, as etcd 3.5's metrics listener.
pub fn metrics_routes(http: Http) -> Routes {
    let router = health_routes().with_state(http).fallback(|| async { not_found() });
    Routes::from(router)
}

/// `/metrics`, `/health`, `/livez`, `/readyz` and their checks.
fn health_routes() -> axum::Router<Http> {
    axum::Router::new()
        .route("/metrics", any(metrics))
        .route("/health", any(health))
        .route("/livez", any(livez))
        .route("/livez/{check}", any(livez_one))
        .route("/readyz", any(readyz))
        .route("/readyz/{check}", any(readyz_one))
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Go's `http.Error`: plain text with a newline, not to be sniffed.
fn http_error(status: StatusCode, text: &str) -> Response {
    let mut r = response(status, "text/plain; charset=utf-8", format!("{text}\n"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// etcd's answer to a method an endpoint does not serve.
fn only_get(method: &Method) -> Option<Response> {
    if method == Method::GET {
        return None;
    }
    let mut r = http_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
    Some(r)
}

/// etcd's access controller: CORS headers on every answer of the client
/// port's HTTP side.
async fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    r
}

/// What reaches no route: a gRPC method Synod does not serve, or an HTTP
/// path it does not know (an OPTIONS preflight is answered 200 for any
/// path, as etcd does).
async fn client_fallback(request: Request<Body>) -> Response {
    let grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let answer = if request.method() == Method::OPTIONS {
        response(StatusCode::OK, "text/plain; charset=utf-8", Body::empty())
    } else {
        not_found()
    };
    with_cors(answer).await
}

/// etcd's `/version` answer, its fields in etcd's order.
#[derive(serde::Serialize)]
struct Versions {
    etcdserver: &'static str,
    etcdcluster: &'static str,
}

/// `/version`: the etcd version Synod implements, as server and cluster
/// version (Synod has no rolling upgrades between versions to report).
async fn version(method: Method) -> Response {
    if let Some(r) = options_or_only_get(&method) {
        return r;
    }
    let body = Versions { etcdserver: ETCD_VERSION, etcdcluster: ETCD_VERSION };
    response(StatusCode::OK, "application/json", serde_json::to_string(&body).unwrap_or_default())
}

/// An OPTIONS preflight (200, as etcd answers it before routing), or the
/// refusal of any other method but GET.
fn options_or_only_get(method: &Method) -> Option<Response> {
    if method == Method::OPTIONS {
        return Some(response(StatusCode::OK, "text/plain; charset=utf-8", Body::empty()));
    }
    only_get(method)
}

/// `/metrics`: every metric, in Prometheus's text format.
async fn metrics(State(http): State<Http>) -> Response {
    let text = http.inner.metrics.render(&http.inner.ctx).await;
    response(StatusCode::OK, crate::http::metrics::content_type(), text)
}

/// The values of query parameter `name`, without empty ones.
fn query_values(uri: &Uri, name: &str) -> Vec<String> {
    let query = uri.query().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Whether query parameter `name` is given at all (`?verbose`).
fn has_query(uri: &Uri, name: &str) -> bool {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).any(|(k, _)| k == name)
}

/// etcd's `/health` answer.
#[derive(serde::Serialize)]
struct Health {
    health: &'static str,
    reason: String,
}

/// `/health` (etcd 3.5): false if an alarm not excluded (`?exclude=NOSPACE`)
/// is raised, if this member has no leader (unless `?serializable=true`),
/// or if a read through the protocol fails or times out.
async fn health(State(http): State<Http>, method: Method, uri: Uri) -> Response {
    if let Some(r) = options_or_only_get(&method) {
        return r;
    }
    let excluded: BTreeSet<String> = query_values(&uri, "exclude").into_iter().collect();
    let serializable = query_values(&uri, "serializable").iter().any(|v| v == "true");
    let reason = http.check_health(&excluded, serializable).await.err();
    http.inner.metrics.health_checked(reason.is_none());
    let body = Health { health: if reason.is_none() { "true" } else { "false" }, reason: reason.unwrap_or_default() };
    let json = serde_json::to_string(&body).unwrap_or_default();
    match body.health {
        "true" => response(StatusCode::OK, "text/plain; charset=utf-8", json),
        _ => {
            tracing::warn!(output = %json, "serving /health false");
            http_error(StatusCode::SERVICE_UNAVAILABLE, &json)
        }
    }
}

/// The checks of `/livez` (etcd 3.5): the member serves reads.
const LIVEZ: &[&str] = &["serializable_read"];

/// The checks of `/readyz` (etcd 3.5): no CORRUPT alarm, reads served
/// locally and through the protocol, and a voting member.
const READYZ: &[&str] = &["data_corruption", "linearizable_read", "non_learner", "serializable_read"];

async fn livez(State(http): State<Http>, method: Method, uri: Uri) -> Response {
    http.probe("livez", LIVEZ, None, &method, &uri).await
}

async fn livez_one(State(http): State<Http>, Path(check): Path<String>, method: Method, uri: Uri) -> Response {
    http.probe("livez", LIVEZ, Some(&check), &method, &uri).await
}

async fn readyz(State(http): State<Http>, method: Method, uri: Uri) -> Response {
    http.probe("readyz", READYZ, None, &method, &uri).await
}

async fn readyz_one(State(http): State<Http>, Path(check): Path<String>, method: Method, uri: Uri) -> Response {
    http.probe("readyz", READYZ, Some(&check), &method, &uri).await
}

impl Http {
    /// `/health`'s checks, in etcd's order; the reason of the first that
    /// fails.
    async fn check_health(&self, excluded: &BTreeSet<String>, serializable: bool) -> Result<(), String> {
        let ctx = &self.inner.ctx;
        for a in self.alarms().await.map_err(|e| format!("RANGE ERROR:{e}"))? {
            let name =
                synod_etcd_api::etcdserverpb::AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
            if !excluded.contains(name) {
                return Err(format!("ALARM {name}"));
            }
        }
        if !serializable && !ctx.handle.view().has_leader() {
            return Err("RAFT NO LEADER".into());
        }
        self.read(serializable).await.map_err(|e| format!("RANGE ERROR:{e}"))
    }

    /// The active alarms, as this member applied them.
    async fn alarms(&self) -> Result<Vec<synod_etcd_api::etcdserverpb::AlarmMember>, String> {
        self.within(self.inner.ctx.handle.with_state(|m| m.alarms().get(alarm::NONE))).await
    }

    /// A read, as etcd's checks make one (a range of one key, keys only):
    /// answered from this member's state (`serializable`), or
    /// linearizably, through the leader.
    async fn read(&self, serializable: bool) -> Result<(), String> {
        let ctx = &self.inner.ctx;
        if serializable {
            return self.within(ctx.handle.with_state(|_| ())).await;
        }
        let read = async {
            match ctx.read(&Query::Members).await {
                Ok(_) => Ok(()),
                Err(e) => Err(crate::status::runtime(&e).message().to_string()),
            }
        };
        match tokio::time::timeout(self.inner.timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(crate::status::runtime(&synod_runtime::Error::Timeout).message().to_string()),
        }
    }

    /// Waits for a question to the replica, up to the request timeout.
    async fn within<T>(
        &self,
        asked: impl std::future::Future<Output = Result<T, synod_runtime::Error>>,
    ) -> Result<T, String> {
        let timeout = synod_runtime::Error::Timeout;
        match tokio::time::timeout(self.inner.timeout, asked).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(crate::status::runtime(&e).message().to_string()),
            Err(_) => Err(crate::status::runtime(&timeout).message().to_string()),
        }
    }

    /// One named check of `/livez` or `/readyz`.
    async fn check(&self, name: &str) -> Result<(), String> {
        match name {
            "serializable_read" => self.read(true).await,
            "linearizable_read" => self.read(false).await,
            "data_corruption" => {
                let alarms = self.alarms().await?;
                match alarms.iter().any(|a| a.alarm == alarm::CORRUPT) {
                    true => Err("alarm activated: CORRUPT".into()),
                    false => Ok(()),
                }
            }
            "non_learner" => match self.inner.ctx.handle.view().voter {
                true => Ok(()),
                false => Err("not supported for learner".into()),
            },
            other => Err(format!("Health check: {other} not registered")),
        }
    }

    /// `/livez` or `/readyz` (`kind`), with `checks`; or only the check
    /// `one` (`/readyz/linearizable_read`). etcd 3.5's answers: 200 and
    /// `ok` (each check listed first with `?verbose`), or 503 and each
    /// check's outcome. `?exclude=NAME` skips a check.
    async fn probe(&self, kind: &str, checks: &[&str], one: Option<&str>, method: &Method, uri: &Uri) -> Response {
        if let Some(r) = options_or_only_get(method) {
            return r;
        }
        let run: Vec<&str> = match one {
            Some(name) if checks.contains(&name) => vec![name],
            Some(_) => return not_found(),
            None => {
                let excluded = query_values(uri, "exclude");
                checks.iter().copied().filter(|c| !excluded.iter().any(|e| e == c)).collect()
            }
        };
        let mut report = String::new();
        let mut failed = false;
        for name in run {
            let outcome = self.check(name).await;
            self.inner.metrics.check_ran(kind, name, outcome.is_ok());
            match outcome {
                Ok(()) => report.push_str(&format!("[+]{name} ok\n")),
                Err(e) => {
                    failed = true;
                    report.push_str(&format!("[-]{name} failed: {e}\n"));
                }
            }
        }
        if failed {
            tracing::warn!(path = %uri.path(), reason = %report, "health check failed");
            return http_error(StatusCode::SERVICE_UNAVAILABLE, &report);
        }
        let mut body = String::new();
        if has_query(uri, "verbose") {
            body.push_str(&report);
        }
        body.push_str("ok\n");
        let mut r = response(StatusCode::OK, "text/plain; charset=utf-8", body);
        r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_read_as_go_reads_them() {
        let uri: Uri = "/health?exclude=NOSPACE&exclude=&serializable=true&exclude=CORRUPT".parse().unwrap();
        assert_eq!(query_values(&uri, "exclude"), ["NOSPACE", "CORRUPT"]);
        assert_eq!(query_values(&uri, "serializable"), ["true"]);
        let uri: Uri = "/readyz?verbose&exclude=non%5Flearner+x".parse().unwrap();
        assert!(has_query(&uri, "verbose"));
        assert_eq!(query_values(&uri, "exclude"), ["non_learner x"]);
        assert!(query_values(&"/health".parse().unwrap(), "exclude").is_empty());
    }
}
