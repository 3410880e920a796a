//! Every frame decoder (canonical JSON and MessagePack, and each seed
//! dialect's) fed arbitrary input: it answers a frame or a `FrameError`,
//! never panics, and a refusal names the frame's `id` whenever the frame
//! carried a readable one, so the gateway can answer it on the connection
//! instead of dropping it.

use proptest::prelude::*;
use protocol::client::{COMMANDS, decode};
use protocol::dialect::Dialect;
use protocol::{Encoding, FrameError};
use serde_json::{Value, json};

fn encodings() -> Vec<Encoding> {
    let mut all = vec![Encoding::Json, Encoding::MsgPack];
    all.extend(Dialect::ALL.iter().map(|&dialect| Encoding::Dialect(dialect)));
    all
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|float| serde_json::Number::from_f64(float).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Field names a decoder looks for, and others.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "chat_id",
            "conversation_id",
            "content",
            "client_message_id",
            "message_id",
            "message_ids",
            "seq",
            "after_seq",
            "limit",
            "user_ids",
            "token",
            "type",
            "emoji",
            "to_user_id",
            "call_id",
            "sdp",
            "file_id",
            "file_url",
            "reply_to_id",
            "send_at",
            "ttl",
            "receiver_id",
            "group_id",
            "is_typing",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

/// Every command name the canonical contract and the dialects know, and others.
fn command_name() -> impl Strategy<Value = String> {
    let mut known = COMMANDS.to_vec();
    // The seed dialects' own names.
    known.extend(["message", "delivered", "read", "heartbeat", "chat", "recall"]);
    prop_oneof![prop::sample::select(known).prop_map(str::to_owned), "[a-z._]{0,16}"]
}

/// A frame that looks like one: a known (or unknown) type, a string id,
/// and `data` of any shape.
fn framelike() -> impl Strategy<Value = (String, Value)> {
    ("[a-zA-Z0-9-]{1,12}", command_name(), any_json(), any_json()).prop_map(|(id, kind, data, extra)| {
        let frame = json!({"type": kind, "id": id, "data": data, "timestamp": extra});
        (id, frame)
    })
}

/// What a decoder must answer: a frame, or an error with a message.
fn well_formed(answer: &Result<protocol::ClientFrame, FrameError>) -> Result<(), TestCaseError> {
    if let Err(error) = answer {
        prop_assert!(!error.to_string().is_empty(), "an error says what is wrong");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_are_refused_or_read_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for encoding in encodings() {
            well_formed(&decode(&bytes, encoding))?;
        }
    }

    #[test]
    fn arbitrary_text_is_refused_or_read_never_a_panic(text in ".{0,256}") {
        for encoding in encodings() {
            well_formed(&decode(text.as_bytes(), encoding))?;
        }
    }

    #[test]
    fn a_frame_of_any_shape_is_answered_to_its_id((id, frame) in framelike()) {
        let text = frame.to_string();
        let packed = rmp_serde::to_vec_named(&frame).unwrap();
        for (bytes, encoding) in [(text.as_bytes(), Encoding::Json), (packed.as_slice(), Encoding::MsgPack)] {
            let answer = decode(bytes, encoding);
            well_formed(&answer)?;
            // The canonical contract reads the id of every envelope it can
            // parse, so even a refusal reaches the command that caused it.
            match answer {
                Ok(decoded) => prop_assert_eq!(decoded.id.as_deref(), Some(id.as_str())),
                Err(error) => prop_assert_eq!(error.id(), Some(id.as_str()), "{} ({:?})", error, encoding),
            }
        }
        for dialect in Dialect::ALL {
            well_formed(&decode(text.as_bytes(), Encoding::Dialect(dialect)))?;
        }
    }

    #[test]
    fn truncated_frames_are_refused_never_a_panic((_, frame) in framelike(), cut in any::<prop::sample::Index>()) {
        let text = frame.to_string();
        let packed = rmp_serde::to_vec_named(&frame).unwrap();
        let text_cut = &text.as_bytes()[..cut.index(text.len())];
        let packed_cut = &packed[..cut.index(packed.len())];
        for encoding in encodings() {
            well_formed(&decode(text_cut, encoding))?;
        }
        let answer = decode(packed_cut, Encoding::MsgPack);
        prop_assert!(answer.is_err(), "a cut MessagePack frame is incomplete");
        well_formed(&answer)?;
    }
}
