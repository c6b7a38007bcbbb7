//! The HTTP/2 `:authority` that etcd's Go client sends, made acceptable to
//! the server.
//!
//! clientv3 3.4 (Debian's etcdctl) sends the endpoint's whole URL,
//! `http://127.0.0.1:2379`, as the `:authority` of its per-endpoint calls
//! (`endpoint status`, `endpoint hashkv`, `defrag`, `move-leader`), and
//! clientv3 3.5.0 sends `#initially=[http://...]` on every call. etcd's
//! Go server never looks at it; the h2 crate under tonic finds it malformed
//! and resets the stream with PROTOCOL_ERROR, and will not relax that
//! (hyperium/h2#525). So each client connection is read through
//! [`AuthorityFix`], which hands the server what the client meant: the bare
//! `host:port`.
//!
//! The work is sans-IO in [`scanner`] (frames) and [`header_block`]
//! (HPACK); this module only connects it to a socket. It adds no task and
//! no copy on the common path: bytes are read straight into the server's
//! buffer and looked at there, and once a connection's first request shows
//! a proper authority (every client but etcd's Go one) the scanner steps
//! aside and reads go straight through.

pub mod header_block;
pub mod scanner;
#[cfg(test)]
mod tests;

use scanner::Scanner;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A client connection whose HTTP/2 `:authority` URLs are made bare on
/// their way to the server. Writes pass untouched.
pub struct AuthorityFix<T> {
    io: T,
    scanner: Scanner,
    /// The client closed its side.
    eof: bool,
}

impl<T> AuthorityFix<T> {
    /// Wraps an accepted connection (plaintext or TLS), before the server
    /// reads a byte of it.
    pub fn new(io: T) -> AuthorityFix<T> {
        AuthorityFix { io, scanner: Scanner::default(), eof: false }
    }

    /// The connection inside.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let pending = this.scanner.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..n]);
                this.scanner.consume(n);
                return Poll::Ready(Ok(()));
            }
            if this.scanner.has_unscanned() {
                this.scanner.resume().map_err(refused)?;
                continue;
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.scanner.is_through() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let read = &buf.filled()[before..];
            if read.is_empty() {
                this.eof = true;
                this.scanner.finish();
                continue;
            }
            let keep = this.scanner.scan(read).map_err(refused)?;
            // What was not kept in place is in the scanner's pending bytes
            // (or still held), to be read next.
            buf.set_filled(before + keep);
            if keep > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// The read error that closes a connection the scanner refused.
fn refused(e: scanner::Refused) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The connection's own information (peer address, TLS certificates), so
/// the services see the client as they would without the wrapper.
impl<T: Connected> Connected for AuthorityFix<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
