//! Wire and disk encoding of the protocol's messages and records.
//!
//! Both are postcard-encoded serde values. Decoding untrusted bytes returns
//! an error, never panics.

use synod_paxos::{Message, Record};
use thiserror::Error;

/// Bytes that do not decode.
#[derive(Debug, Error)]
#[error("malformed {what}: {source}")]
pub struct DecodeError {
    what: &'static str,
    #[source]
    source: postcard::Error,
}

/// Encode a message for a peer.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("messages always serialize")
}

/// Decode a message from a peer; trailing bytes are an error.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode_exact(bytes, "message")
}

fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(DecodeError { what, source: postcard::Error::DeserializeBadEncoding }),
        Err(source) => Err(DecodeError { what, source }),
    }
}

/// Encode a record for the write-ahead log.
pub fn encode_record(record: &Record) -> Vec<u8> {
    postcard::to_allocvec(record).expect("records always serialize")
}

/// Decode a record from the write-ahead log; trailing bytes are an error.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    decode_exact(bytes, "record")
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_paxos::{Ballot, Command, Value};

    #[test]
    fn messages_and_records_round_trip() {
        let v = Value::Commands(vec![Command::new(1, 2, &b"x"[..])].into());
        let m = Message::Accept {
            ballot: Ballot::new(3, 1),
            first_slot: 7,
            values: vec![v.clone(), Value::Noop, Value::ExpireSessions { before: 5 }],
            commit: 6,
        };
        assert_eq!(decode_message(&encode_message(&m)).unwrap(), m);
        let r = Record::Accepted { ballot: Ballot::new(3, 1), first_slot: 7, values: vec![v] };
        assert_eq!(decode_record(&encode_record(&r)).unwrap(), r);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for junk in [&b""[..], b"\xff\xff\xff\xff\xff", b"\x05hello"] {
            assert!(decode_message(junk).is_err());
        }
    }
}
