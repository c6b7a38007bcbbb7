//! The peer decoder fed random and mutated bytes: an error or a message,
//! never a panic, and never an allocation the bytes did not pay for.

use proptest::prelude::*;
use synod_paxos::{Ballot, Command, Message, PromisedEntry, Value};
use synod_runtime::codec::{decode_message, encode_message};

/// Real messages of every shape, to mutate.
fn samples() -> Vec<Vec<u8>> {
    let v = Value::Commands(vec![Command::new(1, 2, &b"payload"[..])].into());
    let b = Ballot::new(3, 1);
    [
        Message::Prepare { ballot: b, from_slot: 7, handoff: Some(b) },
        Message::Promise {
            ballot: b,
            from_slot: 1,
            entries: vec![PromisedEntry { slot: 1, ballot: b, value: v.clone(), chosen: true }],
            compacted: 0,
        },
        Message::Accept { ballot: b, first_slot: 9, values: vec![v.clone(), Value::Noop], commit: 8 },
        Message::Chosen { first_slot: 1, values: vec![v], commit: 1 },
        Message::SnapshotChunk { slot: 4, offset: 0, total: 3, data: vec![1, 2, 3].into() },
        Message::Forward { commands: vec![Command::new(5, 6, &b"x"[..])] },
        Message::RejoinQuery,
    ]
    .iter()
    .map(encode_message)
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_decode_to_an_error_or_a_message(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_message(&bytes);
    }

    #[test]
    fn mutated_messages_decode_to_an_error_or_a_message(
        which in 0usize..7,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        huge_length in any::<bool>(),
    ) {
        let mut bytes = samples()[which].clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if huge_length {
            // A length prefix (a varint) claiming far more than follows.
            let i = cut.index(bytes.len());
            bytes.splice(i..i, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        } else {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(msg) = decode_message(&bytes) {
            // Whatever decodes encodes again, no larger than a few times
            // the bytes it came from (nothing was made out of nothing).
            prop_assert!(encode_message(&msg).len() <= 4 * bytes.len() + 16);
        }
    }
}
