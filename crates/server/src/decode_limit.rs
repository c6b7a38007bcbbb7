//! The gRPC decoding limit (`--max-request-bytes` plus etcd's gRPC
//! overhead), enforced as grpc-go, and so etcd, enforces it: a request
//! message whose length prefix is over the limit is refused with
//! ResourceExhausted, `grpc: received message larger than max (N vs. M)`,
//! N the message's length and M the limit, in a unary call and on a stream
//! alike.
//!
//! tonic refuses the same message with OutOfRange and its own words, so the
//! limit is checked here first: the request body of every gRPC call is read
//! through [`Limited`], which follows the length prefixes of its messages
//! as the bytes pass and, at the prefix of a message over the limit, ends
//! the body with the refusal as its error. tonic's decoder hands a body's
//! [`Status`] error on unchanged, as the call's status (unary) or as the
//! error the service reads from its stream (which the streaming services
//! end the stream with). The message itself is never buffered here.
//!
//! It must never change a body that keeps to the limit: bytes pass through
//! as they came, and only the chunk holding an oversized prefix is cut
//! short before it.

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tonic::service::Routes;
use tonic::Status;

/// The length of a gRPC message's prefix: a compression flag and a
/// big-endian `u32` length.
const PREFIX: usize = 5;

/// The gRPC services of `routes`, whose request messages are held to
/// `limit` bytes as grpc-go holds them.
pub fn with_grpc_go_decode_limit(routes: Routes, limit: usize) -> Routes {
    let limited = move |request: http::Request<Body>| request.map(|body| Body::new(Limited::new(body, limit)));
    let router = routes.into_axum_router().layer(tower::util::MapRequestLayer::new(limited));
    Routes::from(router)
}

/// grpc-go's refusal of a received message of `length` bytes over `limit`.
pub fn too_large(length: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!("grpc: received message larger than max ({length} vs. {limit})"))
}

/// A request body whose gRPC messages are held to a limit.
pub struct Limited<B> {
    inner: B,
    limit: usize,
    prefixes: Prefixes,
    /// The refusal to give once the bytes before the oversized message
    /// have been given.
    refusal: Option<Status>,
    /// A refusal was given: the body has ended.
    ended: bool,
}

impl<B> Limited<B> {
    /// `inner`, with its messages held to `limit` bytes.
    pub fn new(inner: B, limit: usize) -> Limited<B> {
        Limited { inner, limit, prefixes: Prefixes::default(), refusal: None, ended: false }
    }
}

impl<B> http_body::Body for Limited<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tower::BoxError>,
{
    type Data = Bytes;
    type Error = tower::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(refusal) = this.refusal.take() {
            this.ended = true;
            return Poll::Ready(Some(Err(refusal.into())));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        let Some(over) = this.prefixes.scan(data, this.limit) else {
            return Poll::Ready(Some(Ok(frame)));
        };
        let refusal = too_large(over.length, this.limit);
        if over.at == 0 {
            this.ended = true;
            return Poll::Ready(Some(Err(refusal.into())));
        }
        // The messages before it are the caller's to read first.
        let before = data.slice(..over.at);
        this.refusal = Some(refusal);
        Poll::Ready(Some(Ok(Frame::data(before))))
    }

    fn is_end_stream(&self) -> bool {
        (self.ended || self.inner.is_end_stream()) && self.refusal.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.ended || self.refusal.is_some() {
            return http_body::SizeHint::default();
        }
        self.inner.size_hint()
    }
}

/// A message over the limit, as [`Prefixes::scan`] finds it.
#[derive(Debug, PartialEq, Eq)]
struct Oversized {
    /// Where its prefix starts in the chunk scanned (0 when it started in
    /// an earlier chunk).
    at: usize,
    /// Its length, as its prefix gives it.
    length: usize,
}

/// Where a gRPC body's messages start, followed across the chunks the body
/// arrives in: each message is a prefix and then that many bytes.
#[derive(Debug, Default)]
struct Prefixes {
    /// The bytes of the current prefix read so far.
    prefix: [u8; PREFIX],
    read: usize,
    /// The bytes of the current message still to come.
    remaining: usize,
}

impl Prefixes {
    /// Reads the next chunk of the body: the first message in it whose
    /// length is over `limit`, if there is one. Nothing after it is read.
    fn scan(&mut self, chunk: &[u8], limit: usize) -> Option<Oversized> {
        let mut at = 0;
        let mut i = 0;
        while i < chunk.len() {
            if self.remaining > 0 {
                let skipped = self.remaining.min(chunk.len() - i);
                self.remaining -= skipped;
                i += skipped;
                continue;
            }
            if self.read == 0 {
                at = i;
            }
            self.prefix[self.read] = chunk[i];
            self.read += 1;
            i += 1;
            if self.read == PREFIX {
                self.read = 0;
                let [_, length @ ..] = self.prefix;
                let length = u32::from_be_bytes(length) as usize;
                if length > limit {
                    return Some(Oversized { at, length });
                }
                self.remaining = length;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A gRPC message of `length` bytes (uncompressed), prefix included.
    fn message(length: usize) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(length as u32).to_be_bytes());
        m.resize(PREFIX + length, b'x');
        m
    }

    #[test]
    fn prefixes_are_followed_across_chunks() {
        let two = [message(3), message(10)].concat();
        // Every way of cutting the body in two finds the second message,
        // wherever its prefix falls.
        for cut in 0..=two.len() {
            let mut p = Prefixes::default();
            let first = p.scan(&two[..cut], 9);
            let second = p.scan(&two[cut..], 9);
            let found = first.map(|o| (0, o)).or(second.map(|o| (1, o)));
            let (chunk, over) = found.unwrap_or_else(|| panic!("cut at {cut}: not found"));
            assert_eq!(over.length, 10, "cut at {cut}");
            let prefix_starts = message(3).len();
            match chunk {
                0 => assert_eq!(over.at, prefix_starts, "cut at {cut}"),
                _ if cut <= prefix_starts => assert_eq!(over.at, prefix_starts - cut, "cut at {cut}"),
                _ => assert_eq!(over.at, 0, "cut at {cut}: the prefix started in the first chunk"),
            }
        }
    }

    #[test]
    fn messages_up_to_the_limit_pass() {
        let mut p = Prefixes::default();
        let body = [message(9), message(0), message(9)].concat();
        assert_eq!(p.scan(&body, 9), None);
        assert_eq!(p.scan(&message(10), 9), Some(Oversized { at: 0, length: 10 }));
    }

    /// Every frame of `body`, data and errors, as it gives them.
    async fn frames(body: Body, limit: usize) -> Vec<Result<Vec<u8>, Status>> {
        let mut limited = Limited::new(body, limit);
        let mut got = vec![];
        while let Some(frame) = limited.frame().await {
            got.push(match frame {
                Ok(f) => Ok(f.into_data().expect("only data").to_vec()),
                Err(e) => Err(*e.downcast::<Status>().expect("a Status")),
            });
        }
        got
    }

    #[tokio::test]
    async fn an_oversized_message_ends_the_body_after_the_messages_before_it() {
        let small = message(4);
        let body = Body::from([small.clone(), message(100)].concat());
        let got = frames(body, 50).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &small);
        let refusal = got[1].as_ref().unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refusal.message(), "grpc: received message larger than max (100 vs. 50)");
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_given_unchanged() {
        let body = [message(50), message(1)].concat();
        let got = frames(Body::from(body.clone()), 50).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &body);
    }
}
