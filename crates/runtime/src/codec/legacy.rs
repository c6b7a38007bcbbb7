//! Peer protocol version 4 and the log records written before schema
//! version 1: postcard-encoded serde values, with no rule for evolving
//! them. Kept so that a member reads a data directory an earlier release
//! wrote and talks to an earlier release's members during a rolling
//! upgrade; nothing new is written in it except to such a member.

use super::DecodeError;
use crate::transport::ClusterInfo;
use synod_paxos::{Message, Record};

fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(DecodeError::new(what, "trailing bytes")),
        Err(e) => Err(DecodeError::new(what, e.to_string())),
    }
}

/// Encodes a message for a version-4 peer.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("messages always serialize")
}

/// Decodes a message from a version-4 peer; trailing bytes are an error.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_exact(bytes, "message")
}

/// Encodes a record as releases before schema version 1 wrote it.
pub fn encode_record(record: &Record) -> Vec<u8> {
    postcard::to_allocvec(record).expect("records always serialize")
}

/// Decodes a record written before schema version 1.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode_exact(bytes, "record")
}

/// Encodes a directory answer for a version-4 member.
pub fn encode_cluster_info(info: &ClusterInfo) -> Vec<u8> {
    postcard::to_allocvec(info).expect("cluster info always serializes")
}

/// Decodes a version-4 member's directory answer.
pub fn decode_cluster_info(bytes: &[u8]) -> Result<ClusterInfo, DecodeError> {
    decode_exact(bytes, "directory answer")
}
