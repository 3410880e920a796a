//! Frames on the wire: the envelope as JSON text (default) or MessagePack
//! binary (subprotocol `switchboard.msgpack`), the same fields both ways.

use bytes::Bytes;
use protocol::Event;
use tokio_tungstenite::tungstenite::Message;

/// The subprotocol a client offers to speak MessagePack.
pub const MSGPACK_PROTOCOL: &str = "switchboard.msgpack";
/// The explicit name of the default JSON encoding.
pub const JSON_PROTOCOL: &str = "switchboard.json";

/// How a connection encodes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MsgPack,
}

impl Encoding {
    /// Picks from a `Sec-WebSocket-Protocol` offer; answers the encoding
    /// and the protocol name to echo, if any.
    pub fn negotiate(offer: Option<&str>) -> (Self, Option<&'static str>) {
        let offered = |name: &str| offer.is_some_and(|offer| offer.split(',').any(|item| item.trim() == name));
        if offered(MSGPACK_PROTOCOL) {
            (Self::MsgPack, Some(MSGPACK_PROTOCOL))
        } else if offered(JSON_PROTOCOL) {
            (Self::Json, Some(JSON_PROTOCOL))
        } else {
            (Self::Json, None)
        }
    }
}

/// Why a client frame was not understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("binary frames need the {MSGPACK_PROTOCOL} subprotocol; text frames are JSON")]
    WrongKind,
}

/// Parses a client frame in either encoding (a frame's kind says which).
pub fn decode(message: &Message) -> Result<Event, DecodeError> {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str()).map_err(|e| DecodeError::Malformed(e.to_string())),
        Message::Binary(bytes) => rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string())),
        _ => Err(DecodeError::WrongKind),
    }
}

/// Encodes `event` once for `encoding`; the result is shared by every
/// recipient speaking it.
pub fn encode(event: &Event, encoding: Encoding) -> Message {
    match encoding {
        Encoding::Json => {
            let text = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
            Message::Text(text.into())
        }
        Encoding::MsgPack => {
            let bytes = rmp_serde::to_vec_named(event).unwrap_or_default();
            Message::Binary(Bytes::from(bytes))
        }
    }
}

/// A frame encoded lazily once per encoding: a fan-out to many recipients
/// serialises the event at most twice, whatever the number of recipients.
#[derive(Debug)]
pub(crate) struct SharedFrame {
    event: Event,
    json: std::sync::OnceLock<Message>,
    msgpack: std::sync::OnceLock<Message>,
}

impl SharedFrame {
    pub(crate) fn new(event: Event) -> Self {
        Self { event, json: std::sync::OnceLock::new(), msgpack: std::sync::OnceLock::new() }
    }

    /// The frame for `encoding` (a cheap, reference-counted clone).
    pub(crate) fn get(&self, encoding: Encoding) -> Message {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::MsgPack => &self.msgpack,
        };
        cell.get_or_init(|| encode(&self.event, encoding)).clone()
    }
}

#[cfg(test)]
mod tests {
    use protocol::Event;
    use serde_json::json;

    use super::{Encoding, decode, encode};

    #[test]
    fn both_encodings_round_trip() {
        let mut event = Event::new("message.send", json!({"chat_id": 1, "content": "你好"}));
        event.id = Some("c1".into());
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let decoded = decode(&encode(&event, encoding)).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn negotiation() {
        assert_eq!(Encoding::negotiate(None), (Encoding::Json, None));
        assert_eq!(Encoding::negotiate(Some("chat, switchboard.msgpack")).0, Encoding::MsgPack);
        assert_eq!(Encoding::negotiate(Some("switchboard.json")), (Encoding::Json, Some("switchboard.json")));
        assert_eq!(Encoding::negotiate(Some("other")), (Encoding::Json, None));
    }
}
