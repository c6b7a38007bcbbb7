//! Commands: the write requests the replicated log carries, and their bytes.
//!
//! A command is etcd's own request message wrapped in a one-field envelope
//! (a protobuf `oneof`), so its encoding is plain protobuf that any replica,
//! of any later version, decodes the same way. Tags are never reused.

use crate::error::DecodeError;
use crate::pb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, Event, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};

/// A write request, as applied by [`crate::KvState::apply`] on every replica.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// KV.Put.
    Put(PutRequest),
    /// KV.DeleteRange.
    DeleteRange(DeleteRangeRequest),
    /// KV.Txn (one with writes; read-only txns need not go through the log).
    Txn(TxnRequest),
    /// KV.Compact.
    Compact(CompactionRequest),
    /// Lease.LeaseGrant. ID 0 lets the state machine choose the ID.
    LeaseGrant(LeaseGrantRequest),
    /// Lease.LeaseRevoke, and also a lease's expiry as decided by the leader.
    LeaseRevoke(LeaseRevokeRequest),
}

/// The wire form: etcd's messages in a protobuf oneof.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(oneof = "Wire", tags = "1, 2, 3, 4, 5, 6")]
    command: Option<Wire>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Wire {
    #[prost(message, tag = "1")]
    Put(PutRequest),
    #[prost(message, tag = "2")]
    DeleteRange(DeleteRangeRequest),
    #[prost(message, tag = "3")]
    Txn(TxnRequest),
    #[prost(message, tag = "4")]
    Compact(CompactionRequest),
    #[prost(message, tag = "5")]
    LeaseGrant(LeaseGrantRequest),
    #[prost(message, tag = "6")]
    LeaseRevoke(LeaseRevokeRequest),
}

impl Command {
    /// The command's bytes for the log.
    pub fn to_bytes(&self) -> Vec<u8> {
        use prost::Message;
        let wire = match self.clone() {
            Command::Put(r) => Wire::Put(r),
            Command::DeleteRange(r) => Wire::DeleteRange(r),
            Command::Txn(r) => Wire::Txn(r),
            Command::Compact(r) => Wire::Compact(r),
            Command::LeaseGrant(r) => Wire::LeaseGrant(r),
            Command::LeaseRevoke(r) => Wire::LeaseRevoke(r),
        };
        Envelope { command: Some(wire) }.encode_to_vec()
    }

    /// Decodes bytes made by [`Command::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Command, DecodeError> {
        use prost::Message;
        Ok(match Envelope::decode(bytes)?.command.ok_or(DecodeError::Empty)? {
            Wire::Put(r) => Command::Put(r),
            Wire::DeleteRange(r) => Command::DeleteRange(r),
            Wire::Txn(r) => Command::Txn(r),
            Wire::Compact(r) => Command::Compact(r),
            Wire::LeaseGrant(r) => Command::LeaseGrant(r),
            Wire::LeaseRevoke(r) => Command::LeaseRevoke(r),
        })
    }
}

/// The reply to a command, in etcd's message for that RPC. Headers carry the
/// store revision only; cluster id, member id and term are the server's.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Reply to [`Command::Put`].
    Put(PutResponse),
    /// Reply to [`Command::DeleteRange`].
    DeleteRange(DeleteRangeResponse),
    /// Reply to [`Command::Txn`].
    Txn(TxnResponse),
    /// Reply to [`Command::Compact`].
    Compact(CompactionResponse),
    /// Reply to [`Command::LeaseGrant`].
    LeaseGrant(LeaseGrantResponse),
    /// Reply to [`Command::LeaseRevoke`].
    LeaseRevoke(LeaseRevokeResponse),
}

impl Response {
    /// The store revision in the response header.
    pub fn revision(&self) -> i64 {
        let header = match self {
            Response::Put(r) => &r.header,
            Response::DeleteRange(r) => &r.header,
            Response::Txn(r) => &r.header,
            Response::Compact(r) => &r.header,
            Response::LeaseGrant(r) => &r.header,
            Response::LeaseRevoke(r) => &r.header,
        };
        header.as_ref().map_or(0, |h| h.revision)
    }
}

/// What applying a command did.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The reply for the client.
    pub response: Response,
    /// The changes the command made, all at one revision, in the order of
    /// their sub revisions, each with its previous key-value (`prev_kv`;
    /// strip it for watchers that did not ask for it). Empty if the command
    /// changed nothing, in which case the revision did not advance.
    pub events: Vec<Event>,
}
