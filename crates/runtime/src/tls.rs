//! TLS on the peer network: every peer connection, the directory request of
//! a joining node included, can run inside TLS (etcd's `--peer-*` flags).
//!
//! The runtime takes the policy ready-made: a rustls server configuration
//! (this member's certificate; whether and against which CA a connecting
//! peer's certificate is checked) and a client configuration (the
//! certificate this member presents; how the peer it dials is checked).
//! Building those from files and flags is the embedding program's business.
//! With TLS on, the hello is only read after the handshake succeeded, so a
//! plaintext or unauthenticated connection is never answered at all.
//!
//! Peers are known by socket address, not host name, so the name a dialled
//! peer is checked against is its IP address; a verifier that checks only
//! the chain (membership of the cluster's CA) is the caller's choice, and
//! so is an [`AddressCheck`] run once each handshake is done, on both
//! sides, with the other side's certificate and address (etcd checks a
//! connecting peer's certificate names against the address it connects
//! from).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake with a peer may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A check of the other side's certificate (its end-entity certificate)
/// against its IP address, after a handshake that verified the chain: an
/// error, which says why, refuses the connection.
pub type AddressCheck = Arc<
    dyn Fn(CertificateDer<'static>, IpAddr) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

/// TLS for the peer network.
#[derive(Clone)]
pub struct PeerTls {
    /// How this member's peer listener handshakes with members that connect
    /// to it: its certificate, and whether (and against which CA) theirs is
    /// checked.
    pub server: Arc<ServerConfig>,
    /// How this member handshakes with the members it connects to: the
    /// certificate it presents and how theirs is checked.
    pub client: Arc<ClientConfig>,
    /// Run on the dialled member's certificate and address once a
    /// handshake is done; `None` checks nothing more.
    pub dialled_check: Option<AddressCheck>,
    /// Run on a connecting member's certificate and address once a
    /// handshake is done; `None` checks nothing more.
    pub accepted_check: Option<AddressCheck>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("server", &self.server)
            .field("client", &self.client)
            .field("dialled_check", &self.dialled_check.is_some())
            .field("accepted_check", &self.accepted_check.is_some())
            .finish()
    }
}

/// Runs `check`, if any, on `certs` (the other side's chain, end-entity
/// first) and `addr`.
async fn check_address(
    check: Option<&AddressCheck>,
    certs: Option<&[CertificateDer<'static>]>,
    addr: SocketAddr,
) -> io::Result<()> {
    let Some(check) = check else { return Ok(()) };
    // Without a certificate the handshake's own policy decided.
    let Some(cert) = certs.and_then(|c| c.first()) else { return Ok(()) };
    let ip = addr.ip().to_canonical();
    check(cert.clone(), ip).await.map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))
}

/// A peer connection: plain TCP, or TLS over it.
pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// A connection to or from a peer, TLS or not.
pub(crate) type PeerStream = Box<dyn PeerIo>;

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
}

/// Dials `addr` and, with `tls`, handshakes as a client.
pub(crate) async fn dial(tls: Option<&PeerTls>, addr: SocketAddr) -> io::Result<PeerStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else { return Ok(Box::new(tcp)) };
    let name = ServerName::IpAddress(addr.ip().into());
    let connect = TlsConnector::from(tls.client.clone()).connect(name, tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await.map_err(|_| timed_out())??;
    check_address(tls.dialled_check.as_ref(), stream.get_ref().1.peer_certificates(), addr).await?;
    Ok(Box::new(stream))
}

/// With `tls`, handshakes as the server on an accepted connection.
pub(crate) async fn accept(tls: Option<&PeerTls>, tcp: TcpStream) -> io::Result<PeerStream> {
    let Some(tls) = tls else { return Ok(Box::new(tcp)) };
    let remote = tcp.peer_addr()?;
    let accept = TlsAcceptor::from(tls.server.clone()).accept(tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await.map_err(|_| timed_out())??;
    check_address(tls.accepted_check.as_ref(), stream.get_ref().1.peer_certificates(), remote).await?;
    Ok(Box::new(stream))
}
