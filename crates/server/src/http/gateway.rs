//! etcd's HTTP/JSON gateway: `POST /v3/kv/range`, `/v3/watch`,
//! `/v3/lease/keepalive`, `/v3/auth/...` and every other path etcd's
//! grpc-gateway serves, with etcd 3.4's JSON and errors, for curl scripts,
//! HA managers and API gateways that speak it instead of gRPC.
//!
//! Nothing here is written per method. The routes come from the
//! `google.api.http` annotations of etcd's own API definitions
//! (the descriptor set of [`synod_etcd_api`], with every option kept), and the
//! JSON mapping from their messages: a request body is decoded into a
//! dynamic message of the method's input type and encoded to protobuf; the
//! reply is decoded as the output type and written as JSON the way etcd's
//! gateway (grpc-gateway v1 with jsonpb, `OrigName`) writes it: proto field
//! names, 64-bit integers as strings, bytes in base64, enums by name,
//! default values left out.
//!
//! Each request is served by calling this member's own gRPC services in
//! process ([`tonic::service::Routes`] is a tower service): the protobuf
//! message framed as gRPC, the `Authorization` header (and any
//! `Grpc-Metadata-*` header) as metadata, and the HTTP request's
//! extensions, so a TLS client certificate still names the caller. Every
//! check, auth rule and error is therefore exactly the gRPC path's; the
//! gateway only translates. It must never decide anything a gRPC client
//! would get differently.
//!
//! Streaming methods (watch, lease keep-alive, snapshot, election observe)
//! take a request body of concatenated JSON objects, each sent as one
//! message as soon as it is complete, and answer with one
//! `{"result":{...}}` line per message, until either side closes.
//!
//! As etcd 3.4 does, the same routes are also served under `/v3beta/`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::Service;
use tonic::service::Routes;
use tonic::{Code, Status};
use tracing::debug;

/// etcd's v3 API with every option kept.
static DESCRIPTORS: &[u8] = synod_etcd_api::FILE_DESCRIPTOR_SET;

/// The annotation that binds a method to an HTTP path.
const HTTP_RULE: &str = "google.api.http";

/// Where the gateway's paths start.
const PREFIX: &str = "/v3/";

/// etcd 3.4 serves every route under this prefix too (its deprecated
/// gateway path, removed in 3.5).
const BETA_PREFIX: &str = "/v3beta/";

/// How many responses of a stream may wait for a slow HTTP client before
/// the stream waits for it.
const STREAM_BUFFER: usize = 16;

/// The routes, read once from the descriptor set compiled into the binary.
static TABLE: LazyLock<RouteTable> = LazyLock::new(|| {
    // The descriptor set is built from synod-etcd-api's sources at compile
    // time; a test reads it, so a set that does not load never ships.
    RouteTable::from_descriptors(DESCRIPTORS).expect("synod-etcd-api's descriptor set loads")
});

/// Why a descriptor set gives no route table.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The set does not decode.
    #[error("descriptor set: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// The set does not define the `google.api.http` annotation.
    #[error("the descriptor set does not define {HTTP_RULE}")]
    NoHttpRule,
    /// An annotation the gateway cannot serve (a path template with
    /// variables, a body other than the whole request, a response body).
    #[error("{method}: unsupported HTTP binding: {why}")]
    Unsupported {
        /// The gRPC method.
        method: String,
        /// What is unsupported.
        why: String,
    },
    /// Two methods bound to the same method and path.
    #[error("{verb} {path} is bound to both {first} and {second}")]
    Duplicate {
        /// HTTP method.
        verb: Method,
        /// Path.
        path: String,
        /// One gRPC method.
        first: String,
        /// The other.
        second: String,
    },
}

/// One HTTP binding: the gRPC method a path calls.
#[derive(Clone, Debug)]
pub struct Route {
    /// The method, with its input and output message types.
    pub method: prost_reflect::MethodDescriptor,
    /// The gRPC path (`/etcdserverpb.KV/Range`).
    pub grpc_path: String,
}

impl Route {
    fn input(&self) -> MessageDescriptor {
        self.method.input()
    }

    fn output(&self) -> MessageDescriptor {
        self.method.output()
    }
}

/// Every HTTP binding of a descriptor set, by path and HTTP method.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, HashMap<Method, Route>>,
}

impl RouteTable {
    /// Reads the `google.api.http` annotation of every method of every
    /// service in an encoded `FileDescriptorSet`, additional bindings
    /// included.
    pub fn from_descriptors(bytes: &[u8]) -> Result<RouteTable, RouteError> {
        let pool = DescriptorPool::decode(bytes)?;
        let rule = pool.get_extension_by_name(HTTP_RULE).ok_or(RouteError::NoHttpRule)?;
        let mut table = RouteTable::default();
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&rule) {
                    continue;
                }
                let grpc_path = format!("/{}/{}", service.full_name(), method.name());
                let route = Route { method: method.clone(), grpc_path };
                if let Value::Message(binding) = options.get_extension(&rule).as_ref() {
                    table.bind(&route, binding)?;
                }
            }
        }
        Ok(table)
    }

    /// Adds one `HttpRule` and its additional bindings.
    fn bind(&mut self, route: &Route, rule: &DynamicMessage) -> Result<(), RouteError> {
        let unsupported = |why: String| RouteError::Unsupported { method: route.method.full_name().into(), why };
        let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut bound = None;
        for (name, verb) in [
            ("get", Method::GET),
            ("put", Method::PUT),
            ("post", Method::POST),
            ("delete", Method::DELETE),
            ("patch", Method::PATCH),
        ] {
            if rule.has_field_by_name(name) {
                bound = Some((verb, text(name)));
            }
        }
        if rule.has_field_by_name("custom") {
            if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
                let field = |n: &str| match custom.get_field_by_name(n).as_deref() {
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
                };
                let verb = Method::from_bytes(field("kind").as_bytes()).map_err(|e| unsupported(e.to_string()))?;
                bound = Some((verb, field("path")));
            }
        }
        if let Some((verb, path)) = bound {
            if path.contains(['{', '}', '*', ':']) {
                return Err(unsupported(format!("path template {path}")));
            }
            if text("body") != "*" {
                return Err(unsupported(format!("body {:?} (only \"*\", the whole request)", text("body"))));
            }
            if !text("response_body").is_empty() {
                return Err(unsupported("a response_body".into()));
            }
            let by_verb = self.routes.entry(path.clone()).or_default();
            if let Some(first) = by_verb.get(&verb) {
                return Err(RouteError::Duplicate {
                    verb,
                    path,
                    first: first.method.full_name().into(),
                    second: route.method.full_name().into(),
                });
            }
            by_verb.insert(verb, route.clone());
        }
        if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for binding in more {
                if let Value::Message(binding) = binding {
                    self.bind(route, binding)?;
                }
            }
        }
        Ok(())
    }

    /// The bindings of a path (after the `/v3beta/` alias), by HTTP method.
    pub fn lookup(&self, path: &str) -> Option<&HashMap<Method, Route>> {
        match path.strip_prefix(BETA_PREFIX) {
            Some(rest) => self.routes.get(&format!("{PREFIX}{rest}")),
            None => self.routes.get(path),
        }
    }

    /// Every bound path, sorted.
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        paths.sort_unstable();
        paths
    }
}

/// The route table of etcd's API as this build serves it.
pub fn routes() -> &'static RouteTable {
    &TABLE
}

/// The gRPC services a gateway calls: [`Routes`], perhaps under layers
/// (the gRPC metrics count gateway calls as etcd's do, whose gateway dials
/// its own gRPC server).
type GrpcService = tower::util::BoxCloneSyncService<Request<GatewayBody>, Response<GatewayBody>, Infallible>;

/// The gateway: a tower service from HTTP/JSON requests to this member's
/// gRPC services. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    grpc: GrpcService,
    table: &'static RouteTable,
    max_body_bytes: usize,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("max_body_bytes", &self.max_body_bytes).finish_non_exhaustive()
    }
}

/// The HTTP response body the gateway answers with.
pub type GatewayBody = tonic::body::Body;

impl Gateway {
    /// A gateway to the gRPC services in `grpc`. `max_message_bytes` is the
    /// most the services decode in one message; the JSON of one request
    /// message may take four times that (base64 and JSON escapes), and a
    /// longer one is refused unread.
    pub fn new(grpc: Routes, max_message_bytes: usize) -> Gateway {
        Gateway::over(grpc, max_message_bytes)
    }

    /// [`Gateway::new`] over any service that answers gRPC requests as
    /// [`Routes`] does (the routes under layers).
    pub fn over<S, B>(grpc: S, max_message_bytes: usize) -> Gateway
    where
        S: Service<Request<GatewayBody>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let grpc = tower::ServiceExt::map_response(grpc, |r: Response<B>| r.map(tonic::body::Body::new));
        Gateway { grpc: GrpcService::new(grpc), table: &TABLE, max_body_bytes: max_message_bytes.saturating_mul(4) }
    }

    /// Answers one HTTP request.
    pub async fn serve<B>(self, request: Request<B>) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let Some(bindings) = self.table.lookup(request.uri().path()) else {
            return plain_error(StatusCode::NOT_FOUND);
        };
        let Some(route) = bindings.get(request.method()).cloned() else {
            return plain_error(StatusCode::METHOD_NOT_ALLOWED);
        };
        let (parts, body) = request.into_parts();
        let mut objects = JsonObjects::new(tonic::body::Body::new(body), self.max_body_bytes);
        let streaming_request = route.method.is_client_streaming();
        let first = match objects.next().await {
            Ok(first) => first,
            // grpc-gateway answers a request it cannot read with
            // InvalidArgument, but a stream's first message that does not
            // read with the bare decoding error, which is Unknown.
            Err(e) if streaming_request => return error_response(&Status::unknown(e), None),
            Err(e) => return error_response(&Status::invalid_argument(e), None),
        };
        let first = match first.map(|json| encode(&route.input(), json)).transpose() {
            Ok(first) => first,
            Err(e) if streaming_request => return error_response(&Status::unknown(e), None),
            Err(e) => return error_response(&Status::invalid_argument(e), None),
        };
        let grpc_body = if streaming_request {
            let (tx, rx) = mpsc::channel(1);
            if let Some(first) = first {
                let _ = tx.send(Ok(Frame::data(first))).await;
            }
            tokio::spawn(send_stream(objects, route.input(), tx));
            tonic::body::Body::new(StreamBody::new(ReceiverStream::new(rx)))
        } else {
            // A unary request is its first JSON value; anything after it is
            // ignored, as grpc-gateway reads one value. None: an empty
            // body, the empty request.
            let message = first.unwrap_or_else(|| grpc_frame(&[]));
            tonic::body::Body::new(http_body_util::Full::new(message))
        };
        let reply = self.call(&route, parts, grpc_body).await;
        if route.method.is_server_streaming() {
            stream_response(route.output(), reply).await
        } else {
            unary_response(route.output(), reply).await
        }
    }

    /// Calls the gRPC method in process, as a client of this member would.
    async fn call(&self, route: &Route, parts: http::request::Parts, body: GatewayBody) -> Response<GatewayBody> {
        let mut request = Request::new(body);
        *request.method_mut() = Method::POST;
        *request.version_mut() = http::Version::HTTP_2;
        // A path made from the descriptor set's own names always parses.
        *request.uri_mut() = route.grpc_path.parse().expect("a gRPC method path is a valid URI");
        *request.extensions_mut() = parts.extensions;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        for (name, value) in metadata(&parts.headers) {
            headers.append(name, value);
        }
        let grpc = self.grpc.clone();
        match tower::ServiceExt::oneshot(grpc, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl<B> Service<Request<B>> for Gateway
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let gateway = self.clone();
        Box::pin(async move { Ok(gateway.serve(request).await) })
    }
}

/// The gRPC metadata of an HTTP request, as grpc-gateway forwards it:
/// `Authorization` as `authorization`, and `Grpc-Metadata-<key>` as
/// `<key>`, except the keys gRPC itself owns (which a gRPC client cannot
/// send either).
fn metadata(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if name == http::header::AUTHORIZATION {
            out.push((name.clone(), value.clone()));
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            if reserved(key) {
                continue;
            }
            if let Ok(key) = HeaderName::from_bytes(key.as_bytes()) {
                out.push((key, value.clone()));
            }
        }
    }
    out
}

/// Header names gRPC reserves for itself (grpc-go refuses to send them as
/// metadata).
fn reserved(key: &str) -> bool {
    matches!(key, "content-type" | "user-agent" | "te" | "host" | "connection") || key.starts_with("grpc-")
}

/// Frames one protobuf message as gRPC does: uncompressed, length first.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    // The body was at most max_body_bytes (a usize of a few MiB), and
    // protobuf of JSON is never longer than the JSON.
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    framed.freeze()
}

/// A JSON request value as the framed protobuf of `input`.
fn encode(input: &MessageDescriptor, json: serde_json::Value) -> Result<Bytes, String> {
    let message = if json.is_null() {
        // grpc-gateway reads `null` as the empty request.
        DynamicMessage::new(input.clone())
    } else {
        // Unknown fields are dropped first, as grpc-gateway v1 ignores
        // them, so the rest is read strictly: an unknown enum name is an
        // error, as it is to jsonpb (prost-reflect would skip it too when
        // told to allow unknown fields).
        let mut json = json;
        drop_unknown_fields(input, &mut json);
        let options = DeserializeOptions::new().deny_unknown_fields(true);
        DynamicMessage::deserialize_with_options(input.clone(), json, &options).map_err(|e| e.to_string())?
    };
    Ok(grpc_frame(&message.encode_to_vec()))
}

/// Removes from a JSON request the fields `message` does not have (by
/// proto or JSON name), in nested messages too.
fn drop_unknown_fields(message: &MessageDescriptor, json: &mut serde_json::Value) {
    let serde_json::Value::Object(fields) = json else { return };
    fields.retain(|name, value| {
        let Some(field) = message.get_field_by_name(name).or_else(|| message.get_field_by_json_name(name)) else {
            return false;
        };
        if let prost_reflect::Kind::Message(inner) = field.kind() {
            match value {
                serde_json::Value::Array(items) => items.iter_mut().for_each(|item| drop_unknown_fields(&inner, item)),
                value => drop_unknown_fields(&inner, value),
            }
        }
        true
    });
}

/// jsonpb's output: proto field names, 64-bit integers as strings, enums
/// by name, default values left out.
fn json_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(true)
        .use_enum_numbers(false)
        .skip_default_fields(true)
}

/// One reply message of `output` as JSON.
fn to_json(output: &MessageDescriptor, message: Bytes) -> Result<Vec<u8>, Status> {
    let message = DynamicMessage::decode(output.clone(), message)
        .map_err(|e| Status::internal(format!("gateway: decoding a reply: {e}")))?;
    let mut json = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut json, &json_options())
        .map_err(|e| Status::internal(format!("gateway: encoding a reply as JSON: {e}")))?;
    Ok(json.into_inner())
}

/// The JSON values of a request body, one at a time, as they arrive.
struct JsonObjects {
    body: GatewayBody,
    buffer: BytesMut,
    ended: bool,
    max_bytes: usize,
}

impl JsonObjects {
    fn new(body: GatewayBody, max_bytes: usize) -> JsonObjects {
        JsonObjects { body, buffer: BytesMut::new(), ended: false, max_bytes }
    }

    /// The next complete JSON value, `None` at the end of the body (only
    /// whitespace left), or why the body cannot be read.
    async fn next(&mut self) -> Result<Option<serde_json::Value>, String> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.buffer.advance(used);
                    return Ok(Some(value));
                }
                // An incomplete value waits for more of the body, if more may come.
                Some(Err(e)) if !e.is_eof() || self.ended => return Err(e.to_string()),
                None if self.ended => return Ok(None),
                _ => {}
            }
            if self.buffer.len() > self.max_bytes {
                return Err(format!("a request message longer than {} bytes of JSON", self.max_bytes));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(format!("reading the request body: {e}")),
                None => self.ended = true,
            }
        }
    }
}

/// Sends the rest of a streaming request's JSON values as gRPC messages;
/// the first one that does not read, or the end of the body, half-closes
/// the stream (as grpc-gateway does), and the replies go on.
async fn send_stream(
    mut objects: JsonObjects,
    input: MessageDescriptor,
    tx: mpsc::Sender<Result<Frame<Bytes>, Status>>,
) {
    loop {
        let next = tokio::select! {
            next = objects.next() => next,
            _ = tx.closed() => return,
        };
        let frame = match next {
            Ok(Some(json)) => match encode(&input, json) {
                Ok(frame) => frame,
                Err(e) => {
                    debug!(error = %e, "gateway: a streamed request does not read; closing the request stream");
                    return;
                }
            },
            Ok(None) => return,
            Err(e) => {
                debug!(error = %e, "gateway: a streamed request does not read; closing the request stream");
                return;
            }
        };
        if tx.send(Ok(Frame::data(frame))).await.is_err() {
            return;
        }
    }
}

/// What a gRPC reply body yields next.
enum Next {
    /// One message's protobuf.
    Message(Bytes),
    /// The call's end: its status, and the trailers that carried it.
    End(Status, HeaderMap),
}

/// The messages of a gRPC reply, then its status.
struct Replies {
    body: GatewayBody,
    buffer: BytesMut,
    /// A trailers-only reply's status, from its headers.
    ended: Option<(Status, HeaderMap)>,
}

impl Replies {
    fn new(reply: Response<GatewayBody>) -> (HeaderMap, Replies) {
        let (parts, body) = reply.into_parts();
        match Status::from_header_map(&parts.headers) {
            // Trailers-only: the headers are the trailers (grpc-go's view).
            Some(status) => {
                (HeaderMap::new(), Replies { body, buffer: BytesMut::new(), ended: Some((status, parts.headers)) })
            }
            None => (parts.headers, Replies { body, buffer: BytesMut::new(), ended: None }),
        }
    }

    async fn next(&mut self) -> Next {
        if let Some((status, trailers)) = self.ended.take() {
            return Next::End(status, trailers);
        }
        loop {
            if self.buffer.len() >= 5 {
                let length = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]);
                let length = length as usize;
                if self.buffer[0] != 0 {
                    return Next::End(Status::internal("gateway: a compressed reply"), HeaderMap::new());
                }
                if self.buffer.len() >= 5 + length {
                    self.buffer.advance(5);
                    return Next::Message(self.buffer.split_to(length).freeze());
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let status = Status::from_header_map(&trailers)
                            .unwrap_or_else(|| Status::internal("gateway: a reply ended without a status"));
                        return Next::End(status, trailers);
                    }
                },
                Some(Err(status)) => return Next::End(status, HeaderMap::new()),
                None => {
                    return Next::End(Status::internal("gateway: a reply ended without a status"), HeaderMap::new())
                }
            }
        }
    }
}

/// The response to a unary call: its reply as JSON, or etcd's error body.
async fn unary_response(output: MessageDescriptor, reply: Response<GatewayBody>) -> Response<GatewayBody> {
    let (headers, mut replies) = Replies::new(reply);
    let message = match replies.next().await {
        Next::Message(message) => message,
        Next::End(status, trailers) => {
            let status = if status.code() == Code::Ok { Status::internal("gateway: no reply") } else { status };
            return error_response(&status, Some(&trailers));
        }
    };
    match replies.next().await {
        Next::End(status, _) if status.code() == Code::Ok => {}
        Next::End(status, trailers) => return error_response(&status, Some(&trailers)),
        Next::Message(_) => return error_response(&Status::internal("gateway: two replies to a unary call"), None),
    }
    match to_json(&output, message) {
        Ok(json) => {
            let mut response = json_response(StatusCode::OK, Bytes::from(json));
            forward_header_metadata(&headers, response.headers_mut());
            response
        }
        Err(status) => error_response(&status, None),
    }
}

/// The response to a server-streaming call: a `{"result":...}` line per
/// reply, and a final `{"error":...}` if the call fails. The HTTP status is
/// decided by the first thing the call yields: 200 for a message, the
/// error's for a failure before any.
async fn stream_response(output: MessageDescriptor, reply: Response<GatewayBody>) -> Response<GatewayBody> {
    let (headers, mut replies) = Replies::new(reply);
    let first = replies.next().await;
    let status = match &first {
        Next::End(status, _) if status.code() != Code::Ok => http_status(status.code()),
        _ => StatusCode::OK,
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut next = first;
        loop {
            let chunk = match next {
                Next::Message(message) => match to_json(&output, message) {
                    Ok(json) => result_chunk(&json),
                    Err(status) => {
                        let _ = tx.send(Ok(Frame::data(stream_error_chunk(&status)))).await;
                        return;
                    }
                },
                Next::End(status, _) if status.code() == Code::Ok => return,
                Next::End(status, _) => {
                    let _ = tx.send(Ok(Frame::data(stream_error_chunk(&status)))).await;
                    return;
                }
            };
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                return;
            }
            // A client that goes away ends the call (and so its watches)
            // at once, not at the next event.
            next = tokio::select! {
                next = replies.next() => next,
                _ = tx.closed() => return,
            };
        }
    });
    let mut response = Response::new(tonic::body::Body::new(StreamBody::new(ReceiverStream::new(rx))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    forward_header_metadata(&headers, response.headers_mut());
    response
}

/// `{"result":<json>}` and the newline that ends each message of a stream.
fn result_chunk(json: &[u8]) -> Bytes {
    let mut chunk = BytesMut::with_capacity(json.len() + 12);
    chunk.put_slice(b"{\"result\":");
    chunk.put_slice(json);
    chunk.put_slice(b"}\n");
    chunk.freeze()
}

/// grpc-gateway v1's stream error (`{"error":{"grpc_code":...}}`), which
/// ends a stream, with no newline after it.
fn stream_error_chunk(status: &Status) -> Bytes {
    #[derive(serde::Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Chunk<'a> {
        error: StreamError<'a>,
    }
    let http = http_status(status.code());
    let chunk = Chunk {
        error: StreamError {
            grpc_code: status.code() as i32,
            http_code: http.as_u16(),
            message: status.message(),
            http_status: http.canonical_reason().unwrap_or(""),
        },
    };
    Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default())
}

/// The HTTP status grpc-gateway v1 (as etcd 3.4 ships it) gives a gRPC
/// code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// etcd's error body for a failed call: `{"error":..,"message":..,"code":..}`
/// with the HTTP status of its code. The call's trailing metadata, if any,
/// goes out as `Grpc-Trailer-*` trailers, as grpc-gateway sends it (HTTP/1.1
/// clients see them only if they asked with `TE: trailers`).
fn error_response(status: &Status, trailers: Option<&HeaderMap>) -> Response<GatewayBody> {
    #[derive(serde::Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        message: &'a str,
        code: i32,
    }
    let body = ErrorBody { error: status.message(), message: status.message(), code: status.code() as i32 };
    let json = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let trailers = trailers.map(trailer_metadata).filter(|t| !t.is_empty());
    let Some(trailers) = trailers else {
        return json_response(http_status(status.code()), json);
    };
    let names: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
    let declared = HeaderValue::from_str(&names.join(", ")).ok();
    let frames = [Ok::<_, Infallible>(Frame::data(json)), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(tonic::codegen::tokio_stream::iter(frames));
    let mut response = Response::new(tonic::body::Body::new(body));
    *response.status_mut() = http_status(status.code());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(declared) = declared {
        response.headers_mut().insert(http::header::TRAILER, declared);
    }
    response
}

fn json_response(status: StatusCode, json: Bytes) -> Response<GatewayBody> {
    let mut response = Response::new(tonic::body::Body::new(http_body_util::Full::new(json)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A reply's header metadata as `Grpc-Metadata-*` response headers.
fn forward_header_metadata(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if is_status_header(name.as_str()) {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("grpc-metadata-{name}").as_bytes()) {
            to.append(name, value.clone());
        }
    }
}

/// A reply's trailing metadata as `Grpc-Trailer-*` trailers.
fn trailer_metadata(from: &HeaderMap) -> HeaderMap {
    let mut to = HeaderMap::new();
    for (name, value) in from {
        if is_status_header(name.as_str()) {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("grpc-trailer-{name}").as_bytes()) {
            to.append(name, value.clone());
        }
    }
    to
}

/// What carries a call's status rather than metadata.
fn is_status_header(name: &str) -> bool {
    matches!(name, "grpc-status" | "grpc-message" | "grpc-status-details-bin" | "content-length" | "date")
}

/// Go's `http.Error` as grpc-gateway's mux answers a path or method it
/// does not serve: the status text, plain.
fn plain_error(status: StatusCode) -> Response<GatewayBody> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    let mut response = Response::new(tonic::body::Body::new(http_body_util::Full::new(Bytes::from(text))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_etcd_3_4_gateway_path_is_bound_from_the_annotations() {
        let table = routes();
        let expect = [
            ("/v3/kv/range", "etcdserverpb.KV.Range"),
            ("/v3/kv/put", "etcdserverpb.KV.Put"),
            ("/v3/kv/deleterange", "etcdserverpb.KV.DeleteRange"),
            ("/v3/kv/txn", "etcdserverpb.KV.Txn"),
            ("/v3/kv/compaction", "etcdserverpb.KV.Compact"),
            ("/v3/watch", "etcdserverpb.Watch.Watch"),
            ("/v3/lease/grant", "etcdserverpb.Lease.LeaseGrant"),
            ("/v3/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"),
            ("/v3/kv/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"),
            ("/v3/lease/keepalive", "etcdserverpb.Lease.LeaseKeepAlive"),
            ("/v3/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"),
            ("/v3/kv/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"),
            ("/v3/lease/leases", "etcdserverpb.Lease.LeaseLeases"),
            ("/v3/kv/lease/leases", "etcdserverpb.Lease.LeaseLeases"),
            ("/v3/cluster/member/add", "etcdserverpb.Cluster.MemberAdd"),
            ("/v3/cluster/member/remove", "etcdserverpb.Cluster.MemberRemove"),
            ("/v3/cluster/member/update", "etcdserverpb.Cluster.MemberUpdate"),
            ("/v3/cluster/member/list", "etcdserverpb.Cluster.MemberList"),
            ("/v3/cluster/member/promote", "etcdserverpb.Cluster.MemberPromote"),
            ("/v3/maintenance/alarm", "etcdserverpb.Maintenance.Alarm"),
            ("/v3/maintenance/status", "etcdserverpb.Maintenance.Status"),
            ("/v3/maintenance/defragment", "etcdserverpb.Maintenance.Defragment"),
            ("/v3/maintenance/hash", "etcdserverpb.Maintenance.Hash"),
            ("/v3/maintenance/snapshot", "etcdserverpb.Maintenance.Snapshot"),
            ("/v3/maintenance/transfer-leadership", "etcdserverpb.Maintenance.MoveLeader"),
            ("/v3/auth/enable", "etcdserverpb.Auth.AuthEnable"),
            ("/v3/auth/disable", "etcdserverpb.Auth.AuthDisable"),
            ("/v3/auth/authenticate", "etcdserverpb.Auth.Authenticate"),
            ("/v3/auth/user/add", "etcdserverpb.Auth.UserAdd"),
            ("/v3/auth/user/get", "etcdserverpb.Auth.UserGet"),
            ("/v3/auth/user/list", "etcdserverpb.Auth.UserList"),
            ("/v3/auth/user/delete", "etcdserverpb.Auth.UserDelete"),
            ("/v3/auth/user/changepw", "etcdserverpb.Auth.UserChangePassword"),
            ("/v3/auth/user/grant", "etcdserverpb.Auth.UserGrantRole"),
            ("/v3/auth/user/revoke", "etcdserverpb.Auth.UserRevokeRole"),
            ("/v3/auth/role/add", "etcdserverpb.Auth.RoleAdd"),
            ("/v3/auth/role/get", "etcdserverpb.Auth.RoleGet"),
            ("/v3/auth/role/list", "etcdserverpb.Auth.RoleList"),
            ("/v3/auth/role/delete", "etcdserverpb.Auth.RoleDelete"),
            ("/v3/auth/role/grant", "etcdserverpb.Auth.RoleGrantPermission"),
            ("/v3/auth/role/revoke", "etcdserverpb.Auth.RoleRevokePermission"),
            ("/v3/lock/lock", "v3lockpb.Lock.Lock"),
            ("/v3/lock/unlock", "v3lockpb.Lock.Unlock"),
            ("/v3/election/campaign", "v3electionpb.Election.Campaign"),
            ("/v3/election/proclaim", "v3electionpb.Election.Proclaim"),
            ("/v3/election/leader", "v3electionpb.Election.Leader"),
            ("/v3/election/observe", "v3electionpb.Election.Observe"),
            ("/v3/election/resign", "v3electionpb.Election.Resign"),
        ];
        for (path, method) in expect {
            for path in [path.to_string(), path.replacen("/v3/", "/v3beta/", 1)] {
                let bound = table.lookup(&path).unwrap_or_else(|| panic!("{path} is not bound"));
                let route = bound.get(&Method::POST).unwrap_or_else(|| panic!("POST {path} is not bound"));
                assert_eq!(route.method.full_name(), method, "{path}");
            }
        }
        assert_eq!(
            table.lookup("/v3/kv/range").map(|b| b[&Method::POST].grpc_path.as_str()),
            Some("/etcdserverpb.KV/Range")
        );
        assert!(table.lookup("/v3/kv/nothing").is_none());
        assert!(table.lookup("/v3alpha/kv/range").is_none());
        // RangeStream is gRPC only (no annotation).
        assert!(table.paths().iter().all(|p| !p.contains("rangestream")));
    }

    #[test]
    fn a_templated_path_is_refused_rather_than_served_wrong() {
        let pool = DescriptorPool::decode(DESCRIPTORS).unwrap();
        let rule = pool.get_extension_by_name(HTTP_RULE).unwrap();
        let method = pool.get_service_by_name("etcdserverpb.KV").unwrap().methods().next().unwrap();
        let mut binding = DynamicMessage::new(rule.kind().as_message().unwrap().clone());
        binding.set_field_by_name("post", Value::String("/v3/kv/{key}".into()));
        binding.set_field_by_name("body", Value::String("*".into()));
        let route = Route { grpc_path: "/x/y".into(), method };
        let err = RouteTable::default().bind(&route, &binding).unwrap_err();
        assert!(matches!(err, RouteError::Unsupported { .. }), "{err}");
    }

    fn input_of(path: &str) -> MessageDescriptor {
        routes().lookup(path).unwrap()[&Method::POST].input()
    }

    fn output_of(path: &str) -> MessageDescriptor {
        routes().lookup(path).unwrap()[&Method::POST].output()
    }

    fn decode_frame(frame: Bytes) -> Bytes {
        assert_eq!(frame[0], 0);
        let n = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(frame.len(), 5 + n);
        frame.slice(5..)
    }

    #[test]
    fn request_json_takes_proto_and_camel_names_strings_or_numbers_and_enum_names() {
        let json = serde_json::json!({
            "key": "Zm9v", "rangeEnd": "Zm9w", "limit": "3", "revision": 7,
            "sort_order": "DESCEND", "sortTarget": 2, "serializable": true, "unknown": 1
        });
        let bytes = decode_frame(encode(&input_of("/v3/kv/range"), json).unwrap());
        let request = synod_etcd_api::etcdserverpb::RangeRequest::decode(bytes).unwrap();
        assert_eq!(request.key, b"foo");
        assert_eq!(request.range_end, b"fop");
        assert_eq!((request.limit, request.revision), (3, 7));
        assert_eq!(request.sort_order, synod_etcd_api::etcdserverpb::range_request::SortOrder::Descend as i32);
        assert_eq!(request.sort_target, synod_etcd_api::etcdserverpb::range_request::SortTarget::Create as i32);
        assert!(request.serializable);
        let null = decode_frame(encode(&input_of("/v3/kv/range"), serde_json::Value::Null).unwrap());
        assert!(null.is_empty());
        assert!(encode(&input_of("/v3/kv/range"), serde_json::json!({"limit": "x"})).is_err());
        assert!(encode(&input_of("/v3/kv/range"), serde_json::json!({"sort_order": "NO_SUCH"})).is_err());
        // Unknown fields are ignored in nested messages too.
        let txn = serde_json::json!({"success": [{"request_put": {"key": "Zm9v", "x": 1}, "y": [2]}], "z": null});
        let bytes = decode_frame(encode(&input_of("/v3/kv/txn"), txn).unwrap());
        let txn = synod_etcd_api::etcdserverpb::TxnRequest::decode(bytes).unwrap();
        assert_eq!(txn.success.len(), 1);
    }

    #[test]
    fn reply_json_is_jsonpb_with_orig_names_string_int64s_base64_and_no_defaults() {
        use synod_etcd_api::etcdserverpb::{RangeResponse, ResponseHeader};
        use synod_etcd_api::mvccpb::KeyValue;
        let reply = RangeResponse {
            header: Some(ResponseHeader { cluster_id: u64::MAX, member_id: 2, revision: 3, raft_term: 0 }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                value: vec![],
                create_revision: 2,
                mod_revision: 3,
                version: 1,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = to_json(&output_of("/v3/kv/range"), Bytes::from(reply.encode_to_vec())).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"header":{"cluster_id":"18446744073709551615","member_id":"2","revision":"3"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"1"}],"count":"1"}"#
        );
        // A message present but empty stays as {} (etcd's nested txn headers).
        let empty_header = RangeResponse { header: Some(ResponseHeader::default()), ..Default::default() };
        let json = to_json(&output_of("/v3/kv/range"), Bytes::from(empty_header.encode_to_vec())).unwrap();
        assert_eq!(std::str::from_utf8(&json).unwrap(), r#"{"header":{}}"#);
    }

    #[test]
    fn enums_are_written_by_name_and_the_zero_one_left_out() {
        use synod_etcd_api::etcdserverpb::WatchResponse;
        use synod_etcd_api::mvccpb::{event::EventType, Event, KeyValue};
        let event = |kind: EventType| Event {
            r#type: kind.into(),
            kv: Some(KeyValue { key: b"k".to_vec(), ..Default::default() }),
            prev_kv: None,
        };
        let reply = WatchResponse {
            events: vec![event(EventType::Put), event(EventType::Delete)],
            watch_id: -1,
            ..Default::default()
        };
        let json = to_json(&output_of("/v3/watch"), Bytes::from(reply.encode_to_vec())).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"watch_id":"-1","events":[{"kv":{"key":"aw=="}},{"type":"DELETE","kv":{"key":"aw=="}}]}"#
        );
    }

    #[test]
    fn grpc_codes_map_to_grpc_gateway_v1_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::OutOfRange, 400),
            (Code::NotFound, 404),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 412),
            (Code::Unavailable, 503),
            (Code::Unimplemented, 501),
            (Code::Unknown, 500),
            (Code::Cancelled, 408),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, status) in cases {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn headers_become_metadata_as_grpc_gateway_forwards_them() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("tok"));
        headers.insert("grpc-metadata-token", HeaderValue::from_static("t2"));
        headers.insert("grpc-metadata-grpc-timeout", HeaderValue::from_static("1S"));
        headers.insert("grpc-metadata-content-type", HeaderValue::from_static("text/plain"));
        headers.insert("token", HeaderValue::from_static("not forwarded"));
        let mut md: Vec<(String, String)> =
            metadata(&headers).into_iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect();
        md.sort();
        assert_eq!(md, vec![("authorization".into(), "tok".into()), ("token".into(), "t2".into())]);
    }

    #[tokio::test]
    async fn json_values_are_read_one_at_a_time_across_chunks() {
        let chunks: Vec<Result<Frame<Bytes>, Infallible>> =
            ["{\"a\":", "1}  {\"b\"", ":2}\n", "  "].into_iter().map(|c| Ok(Frame::data(Bytes::from(c)))).collect();
        let body = tonic::body::Body::new(StreamBody::new(tonic::codegen::tokio_stream::iter(chunks)));
        let mut objects = JsonObjects::new(body, 1024);
        assert_eq!(objects.next().await.unwrap(), Some(serde_json::json!({"a": 1})));
        assert_eq!(objects.next().await.unwrap(), Some(serde_json::json!({"b": 2})));
        assert_eq!(objects.next().await.unwrap(), None);
        let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from("{\"a\":")));
        assert!(JsonObjects::new(body, 1024).next().await.is_err());
        let body = tonic::body::Body::new(http_body_util::Full::new(Bytes::from(vec![b' '; 100])));
        assert!(JsonObjects::new(body, 10).next().await.is_err(), "a body past the limit is refused");
    }

    #[test]
    fn errors_are_etcds_bodies() {
        let response = error_response(&Status::not_found("etcdserver: requested lease not found"), None);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let chunk = stream_error_chunk(&Status::unknown("auth: permission denied"));
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap(),
            r#"{"error":{"grpc_code":2,"http_code":500,"message":"auth: permission denied","http_status":"Internal Server Error"}}"#
        );
    }
}
