//! Wire and disk encoding of the protocol's messages, log records and
//! directory answers.
//!
//! Today's format is schema version 1, `proto/synod/v1/synod.proto`:
//! protobuf messages with the evolution rules written at the top of that
//! file (fields are never renumbered, new fields are optional, new kinds
//! are new `oneof` arms). Peers speak it as peer protocol version 5.
//!
//! What earlier releases wrote is still read ([`legacy`]): a log record
//! carries its schema in its first byte (a postcard record never starts
//! with [`RECORD_V1`]), and a connection's format is the one its hello
//! names ([`PeerFormat`]), so a member of this release reads a data
//! directory of the last one and talks with its members during a rolling
//! upgrade. Golden files of every format are in `tests/golden/`.
//!
//! Decoding untrusted bytes returns an error, never panics.

pub mod legacy;
mod v1;

use crate::transport::ClusterInfo;
use prost::Message as _;
use synod_paxos::{Message, Record};
use thiserror::Error;

/// Generated from `proto/synod/v1/synod.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/synod.v1.rs"));
}

/// The first byte of a log record in schema version 1. A record of the
/// earlier postcard format starts with its kind's number as a one-byte
/// varint (below 0x80), so the two cannot be confused.
pub const RECORD_V1: u8 = 0xF1;

/// Bytes that do not decode.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("malformed {what}: {reason}")]
pub struct DecodeError {
    what: &'static str,
    reason: String,
}

impl DecodeError {
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError { what, reason: reason.into() }
    }
}

/// The encoding a peer connection carries, named by the protocol version
/// in its hello: the dialler picks, the acceptor follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerFormat {
    /// Peer protocol 4: postcard (releases before schema version 1).
    V4,
    /// Peer protocol 5: schema version 1 (protobuf).
    V5,
}

impl PeerFormat {
    /// The format this release dials with first.
    pub const CURRENT: PeerFormat = PeerFormat::V5;

    /// The protocol version number a hello carries.
    pub fn version(self) -> u8 {
        match self {
            PeerFormat::V4 => 4,
            PeerFormat::V5 => 5,
        }
    }

    /// The format of protocol version `v`, if this release speaks it.
    pub fn of_version(v: u8) -> Option<PeerFormat> {
        match v {
            4 => Some(PeerFormat::V4),
            5 => Some(PeerFormat::V5),
            _ => None,
        }
    }

    /// The format to fall back to when a peer refuses this one as unknown
    /// (a member of an earlier release).
    pub fn older(self) -> Option<PeerFormat> {
        match self {
            PeerFormat::V5 => Some(PeerFormat::V4),
            PeerFormat::V4 => None,
        }
    }
}

/// Encodes a message for a peer in today's format.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    encode_message_as(PeerFormat::CURRENT, msg)
}

/// Decodes a message in today's format; trailing bytes are an error.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_message_as(PeerFormat::CURRENT, bytes)
}

/// Encodes a message for a peer that speaks `format`.
pub fn encode_message_as(format: PeerFormat, msg: &Message) -> Vec<u8> {
    match format {
        PeerFormat::V4 => legacy::encode_message(msg),
        PeerFormat::V5 => pb::Message::from(msg).encode_to_vec(),
    }
}

/// Decodes a message from a peer that speaks `format`.
pub fn decode_message_as(format: PeerFormat, bytes: &[u8]) -> Result<Message, DecodeError> {
    match format {
        PeerFormat::V4 => legacy::decode_message(bytes),
        PeerFormat::V5 => decode_v1::<pb::Message, _>(bytes, "message"),
    }
}

/// Encodes a record for the write-ahead log: [`RECORD_V1`], then the
/// record in schema version 1.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let pb = pb::Record::from(record);
    let mut out = Vec::with_capacity(1 + pb.encoded_len());
    out.push(RECORD_V1);
    pb.encode(&mut out).expect("a Vec grows");
    out
}

/// Decodes a record from the write-ahead log, of schema version 1 or of
/// the postcard format earlier releases wrote.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    match bytes.split_first() {
        Some((&RECORD_V1, body)) => decode_v1::<pb::Record, _>(body, "record"),
        _ => legacy::decode_record(bytes),
    }
}

/// Decodes schema version 1's message `P` from `bytes` and converts it,
/// naming `what` in an error.
fn decode_v1<P, T>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError>
where
    P: prost::Message + Default,
    T: TryFrom<P, Error = DecodeError>,
{
    let pb = P::decode(bytes).map_err(|e| DecodeError::new(what, e.to_string()))?;
    T::try_from(pb)
}

/// Encodes a directory answer in `format`.
pub fn encode_cluster_info(format: PeerFormat, info: &ClusterInfo) -> Vec<u8> {
    match format {
        PeerFormat::V4 => legacy::encode_cluster_info(info),
        PeerFormat::V5 => pb::ClusterInfo::from(info).encode_to_vec(),
    }
}

/// Decodes a directory answer in `format`.
pub fn decode_cluster_info(format: PeerFormat, bytes: &[u8]) -> Result<ClusterInfo, DecodeError> {
    match format {
        PeerFormat::V4 => legacy::decode_cluster_info(bytes),
        PeerFormat::V5 => decode_v1::<pb::ClusterInfo, _>(bytes, "directory answer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::{Ballot, Command, Value};

    #[test]
    fn messages_and_records_round_trip_in_every_format() {
        let v = Value::Commands(vec![Command::new(1, 2, &b"x"[..])].into());
        let m = Message::Accept {
            ballot: Ballot::new(3, 1),
            first_slot: 7,
            values: vec![v.clone(), Value::Noop, Value::ExpireSessions { before: 5 }],
            commit: 6,
        };
        for format in [PeerFormat::V4, PeerFormat::V5] {
            assert_eq!(decode_message_as(format, &encode_message_as(format, &m)).unwrap(), m);
        }
        let r = Record::Accepted { ballot: Ballot::new(3, 1), first_slot: 7, values: vec![v] };
        assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
        assert_eq!(decode_record(&legacy::encode_record(&r)).unwrap(), r);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff\xff\xff\xff", b"\x05hello", b"\x0a\x05\x01"] {
            for format in [PeerFormat::V4, PeerFormat::V5] {
                assert!(decode_message_as(format, junk).is_err(), "{junk:?} decoded as {format:?}");
            }
        }
        for junk in [&b""[..], b"\xf1", b"\xf1\x0a\x05", b"\xf1\xff"] {
            assert!(decode_record(junk).is_err(), "{junk:?} decoded as a record");
        }
    }

    #[test]
    fn a_record_of_an_unknown_kind_is_an_error_but_unknown_fields_are_ignored() {
        // Kind 99 is an arm no release has: the record cannot be skipped.
        let unknown = [RECORD_V1, 0xfa, 0x06, 0x00];
        assert!(decode_record(&unknown).unwrap_err().to_string().contains("unknown"));
        // A known record with a field added by a later release (number 15).
        let mut later = encode_record(&Record::Commit(9));
        later.extend_from_slice(&[0x78, 0x01]);
        assert_eq!(decode_record(&later).unwrap(), Record::Commit(9));
    }
}
