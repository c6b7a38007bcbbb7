//! A small HTTP client for the HTTP endpoints' tests (GET over HTTP/1.1 or
//! HTTP/2, plaintext or TLS with the test CA), and a checker of
//! Prometheus's text exposition format.

use super::Tls;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    /// Its status code.
    pub status: u16,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// Its body, as text.
    pub body: String,
    /// The HTTP version it came in.
    pub version: http::Version,
}

impl Reply {
    /// A header's value ("" if absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// How to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (ALPN `http/1.1` over TLS).
    Http1,
    /// HTTP/2 (prior knowledge in plaintext, ALPN `h2` over TLS).
    Http2,
}

/// A TLS client with the test CA and, if `with_cert`, the client
/// certificate, offering `protocol` by ALPN.
pub fn tls_client(tls: &Tls, with_cert: bool, protocol: Protocol) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls.certs.join("ca.pem")).expect("read ca.pem") {
        roots.add(cert.expect("a CA certificate")).expect("add the test CA");
    }
    let provider = synod_server::tls::provider(synod_server::tls::cipher_suites("").expect("default suites"));
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut cfg = if with_cert {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.certs.join("client.pem"))
            .expect("read client.pem")
            .map(|c| c.expect("a client certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(tls.certs.join("client-key.pem")).expect("read client-key.pem");
        builder.with_client_auth_cert(certs, key).expect("client certificate")
    } else {
        builder.with_no_client_auth()
    };
    cfg.alpn_protocols = vec![match protocol {
        Protocol::Http1 => b"http/1.1".to_vec(),
        Protocol::Http2 => b"h2".to_vec(),
    }];
    cfg
}

/// GETs `path` from 127.0.0.1:`port`, in plaintext or inside `tls`.
pub async fn get(
    port: u16,
    path: &str,
    protocol: Protocol,
    tls: Option<rustls::ClientConfig>,
) -> Result<Reply, String> {
    request(port, http::Method::GET, path, protocol, tls).await
}

/// Sends `method` `path` to 127.0.0.1:`port`, with an empty body.
pub async fn request(
    port: u16,
    method: http::Method,
    path: &str,
    protocol: Protocol,
    tls: Option<rustls::ClientConfig>,
) -> Result<Reply, String> {
    let exchange = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
        match tls {
            None => send(TokioIo::new(tcp), method, path, protocol).await,
            Some(cfg) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
                let name = ServerName::try_from("localhost").expect("a server name");
                let stream = connector.connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
                send(TokioIo::new(stream), method, path, protocol).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.map_err(|_| "no answer within 20 s".to_string())?
}

async fn send<IO>(io: TokioIo<IO>, method: http::Method, path: &str, protocol: Protocol) -> Result<Reply, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = match protocol {
        Protocol::Http1 => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| format!("HTTP/1.1 request: {e}"))?
        }
        Protocol::Http2 => {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            sender.send_request(req).await.map_err(|e| format!("HTTP/2 request: {e}"))?
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        version: parts.version,
    })
}

/// One sample of a metric: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Label name to value.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A scrape, parsed: every metric family's type and samples by sample
/// name (`x_bucket`, `x_sum`, `x_count` for a histogram `x`).
#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name to its `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// Sample name to its samples, in order.
    pub samples: BTreeMap<String, Vec<Sample>>,
}

impl Scrape {
    /// The value of the one sample of `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let all = self.samples.get(name)?;
        let mut matching =
            all.iter().filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)));
        let first = matching.next()?;
        assert!(matching.next().is_none(), "{name} {labels:?} matches more than one sample");
        Some(first.value)
    }

    /// The sum of every sample of `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.samples.get(name).map_or(0.0, |s| s.iter().map(|s| s.value).sum())
    }
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
    chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
}

/// Parses `text` as Prometheus's text exposition format (version 0.0.4),
/// checking it as a scraper would: every line a comment, blank, or a
/// sample `name{label="value",...} value`; every name and label name
/// valid, label values properly quoted and escaped; each family's `# TYPE`
/// once, before its samples; a histogram's buckets cumulative, ending at
/// `+Inf` equal to its `_count`.
pub fn parse_exposition(text: &str) -> Result<Scrape, String> {
    let mut scrape = Scrape::default();
    for (n, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    if !is_name(name, true) {
                        return Err(at("bad metric name"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(at("unknown type"));
                    }
                    if scrape.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("second TYPE line"));
                    }
                }
                ["HELP", name, ..] if !is_name(name, true) => return Err(at("bad metric name")),
                _ => {}
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value")),
        };
        if !is_name(name, true) {
            return Err(at("bad metric name"));
        }
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => parse_labels(inner).map_err(at)?,
            None => (BTreeMap::new(), rest),
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| at("no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("value is not a number"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("timestamp is not an integer"))?;
        }
        if fields.next().is_some() {
            return Err(at("junk after the value"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| scrape.types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        if !scrape.types.contains_key(family) {
            return Err(at("sample before its TYPE line"));
        }
        scrape.samples.entry(name.to_string()).or_default().push(Sample { labels, value });
    }
    for (family, kind) in &scrape.types {
        if kind != "histogram" {
            continue;
        }
        let buckets = scrape.samples.get(&format!("{family}_bucket")).cloned().unwrap_or_default();
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for b in buckets {
            let le = b.labels.get("le").ok_or(format!("{family}: a bucket without le"))?;
            let le: f64 =
                if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("{family}: le {le}"))? };
            let key = b.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
            series.entry(key).or_default().push((le, b.value));
        }
        for (key, bs) in series {
            if !bs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                return Err(format!("{family} {key:?}: buckets not cumulative in increasing le"));
            }
            let last = bs.last().ok_or(format!("{family}: no buckets"))?;
            let labels: Vec<(&str, &str)> = key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = scrape.value(&format!("{family}_count"), &labels).ok_or(format!("{family}: no _count"))?;
            if last.0 != f64::INFINITY || last.1 != count {
                return Err(format!("{family} {key:?}: +Inf bucket {last:?} is not _count {count}"));
            }
        }
    }
    Ok(scrape)
}

/// A series' labels but `le`, in order.
type Labels = Vec<(String, String)>;

/// Parses the labels of a sample, from after its `{`; returns them and
/// what follows the `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), &'static str> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_name(name, false) {
            return Err("bad label name");
        }
        let quoted = rest[eq + 1..].strip_prefix('"').ok_or("unquoted label value")?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape in a label value"),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err("label given twice");
        }
        let after = &quoted[end + 1..];
        rest = match after.strip_prefix(',') {
            Some(r) => r,
            None if after.starts_with('}') => after,
            None => return Err("junk after a label value"),
        };
    }
}
