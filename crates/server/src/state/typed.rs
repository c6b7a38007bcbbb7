//! Typed replies: each request the services send the state machine names
//! the one reply it gets, so a service receives a `PutResponse` for a
//! `PutRequest` rather than the catch-all [`synod_kv::Response`] or
//! [`Reply`] with an arm for every other kind.
//!
//! The runtime hands back one output type for every command
//! ([`crate::state::machine::Output`]); the match from it to the request's
//! own reply is written once here, per request type, and a reply of the
//! wrong kind (a server bug: the machine answers each command with its own
//! kind) is refused in one place, [`crate::context::Context`], instead of
//! in every RPC.

use crate::state::machine::{Query, Reply};
use synod_kv::pb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    TxnRequest, TxnResponse,
};
use synod_kv::{Command, Response};

/// A key-value write with the response it gets.
pub trait Write {
    /// What the state machine answers this write with.
    type Response;
    /// The command proposed for it.
    fn command(self) -> Command;
    /// This write's response out of the state machine's answer, or the
    /// answer back if it is of another kind.
    fn response(answer: Response) -> Result<Self::Response, Response>;
}

macro_rules! write {
    ($request:ty, $variant:ident, $response:ty) => {
        impl Write for $request {
            type Response = $response;
            fn command(self) -> Command {
                Command::$variant(self)
            }
            fn response(answer: Response) -> Result<$response, Response> {
                match answer {
                    Response::$variant(r) => Ok(r),
                    other => Err(other),
                }
            }
        }
    };
}

write!(PutRequest, Put, PutResponse);
write!(DeleteRangeRequest, DeleteRange, DeleteRangeResponse);
write!(TxnRequest, Txn, TxnResponse);
write!(CompactionRequest, Compact, CompactionResponse);
write!(LeaseGrantRequest, LeaseGrant, LeaseGrantResponse);
write!(LeaseRevokeRequest, LeaseRevoke, LeaseRevokeResponse);

/// A read of the state machine with the reply it gets.
pub trait Read {
    /// What the state machine answers this read with.
    type Reply;
    /// The query sent for it.
    fn query(self) -> Query;
    /// This read's reply out of the state machine's answer, or the answer
    /// back if it is of another kind.
    fn reply(answer: Reply) -> Result<Self::Reply, Reply>;
}

macro_rules! read {
    ($request:ty, $variant:ident, $reply:ty) => {
        impl Read for $request {
            type Reply = $reply;
            fn query(self) -> Query {
                Query::$variant(self)
            }
            fn reply(answer: Reply) -> Result<$reply, Reply> {
                match answer {
                    Reply::$variant(r) => Ok(r),
                    other => Err(other),
                }
            }
        }
    };
}

read!(RangeRequest, Range, RangeResponse);
// A read-only txn (`synod_kv::is_read_only`); one with writes is a Write.
read!(TxnRequest, Txn, TxnResponse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_takes_its_own_response_and_refuses_another_kind() {
        let put = PutResponse { prev_kv: None, header: None };
        assert_eq!(PutRequest::response(Response::Put(put.clone())), Ok(put));
        let txn = Response::Txn(TxnResponse::default());
        assert_eq!(PutRequest::response(txn.clone()), Err(txn));
    }

    #[test]
    fn a_write_is_proposed_as_its_own_command() {
        let req = LeaseRevokeRequest { id: 7 };
        assert_eq!(req.command(), Command::LeaseRevoke(req));
    }

    #[test]
    fn a_read_takes_its_own_reply_and_refuses_another_kind() {
        let range = RangeResponse { count: 3, ..Default::default() };
        assert_eq!(RangeRequest::reply(Reply::Range(range.clone())), Ok(range));
        assert_eq!(TxnRequest::reply(Reply::Published), Err(Reply::Published));
        let req = RangeRequest { key: b"k".to_vec(), ..Default::default() };
        assert_eq!(req.clone().query(), Query::Range(req));
    }
}
