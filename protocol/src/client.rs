//! Every frame a client sends, typed: [`ClientCommand`], decoded in one
//! pass from the frame's bytes (JSON text or MessagePack binary) by
//! [`decode`]. A frame that does not decode is read a second time, for its
//! `type` and `id` only, so the error can say which command failed and
//! answer its `id`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, de::Error as _};

use crate::commands::SendMessage;
use crate::frame::Encoding;
use crate::kinds;

/// `auth` (the first frame, when the upgrade carried no token).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Auth {
    pub token: String,
}

/// `message.read`: the read marker moves up to `message_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Read {
    pub chat_id: i64,
    pub message_id: i64,
}

/// `message.delivered`: these messages reached one of the caller's devices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivered {
    pub chat_id: i64,
    pub message_ids: Vec<i64>,
}

/// `sync`: what the client missed after `after_seq`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sync {
    pub chat_id: i64,
    #[serde(default)]
    pub after_seq: u64,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Typing {
    pub chat_id: i64,
    pub is_typing: bool,
}

/// `presence.query`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PresenceQuery {
    pub user_ids: Vec<i64>,
}

/// `reaction.add` and `reaction.remove`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reaction {
    pub message_id: i64,
    pub emoji: String,
}

/// `call.offer` from the caller's device.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallOffer {
    pub to_user_id: i64,
    pub call_type: String,
    pub sdp: String,
    #[serde(default)]
    pub call_id: Option<String>,
}

/// `call.answer` from one of the callee's devices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallAnswer {
    pub call_id: String,
    pub sdp: String,
}

/// `call.ice`: a candidate for the other party (a string or an object,
/// relayed as it came).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallIce {
    pub call_id: String,
    pub candidate: serde_json::Value,
}

/// `call.end` from a party.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallEnd {
    pub call_id: String,
    #[serde(default = "hangup")]
    pub reason: String,
}

fn hangup() -> String {
    "user_hangup".into()
}

/// Every command a client may send.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientCommand {
    Auth(Auth),
    Ping,
    Send(Box<SendMessage>),
    Read(Read),
    Delivered(Delivered),
    Sync(Sync),
    Typing(Typing),
    PresenceQuery(PresenceQuery),
    ReactionAdd(Reaction),
    ReactionRemove(Reaction),
    CallOffer(CallOffer),
    CallAnswer(CallAnswer),
    CallIce(CallIce),
    CallEnd(CallEnd),
}

impl ClientCommand {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Auth(_) => kinds::AUTH,
            Self::Ping => kinds::PING,
            Self::Send(_) => kinds::MESSAGE_SEND,
            Self::Read(_) => kinds::MESSAGE_READ,
            Self::Delivered(_) => kinds::MESSAGE_DELIVERED,
            Self::Sync(_) => kinds::SYNC,
            Self::Typing(_) => kinds::TYPING,
            Self::PresenceQuery(_) => kinds::PRESENCE_QUERY,
            Self::ReactionAdd(_) => kinds::REACTION_ADD,
            Self::ReactionRemove(_) => kinds::REACTION_REMOVE,
            Self::CallOffer(_) => kinds::CALL_OFFER,
            Self::CallAnswer(_) => kinds::CALL_ANSWER,
            Self::CallIce(_) => kinds::CALL_ICE,
            Self::CallEnd(_) => kinds::CALL_END,
        }
    }
}

/// A decoded client frame: the command and the `id` its reply answers as `ref`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub id: Option<String>,
    pub command: ClientCommand,
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not an envelope at all (not JSON or MessagePack, no `type`).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A `type` the server does not know.
    #[error("unknown command {kind:?}")]
    Unknown { id: Option<String>, kind: String },
    /// A known command whose `data` does not fit it.
    #[error("invalid {kind} data: {detail}")]
    Invalid { id: Option<String>, kind: &'static str, detail: String },
}

impl FrameError {
    /// The refused frame's `id`, when it could be read.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Malformed(_) => None,
            Self::Unknown { id, .. } | Self::Invalid { id, .. } => id.as_deref(),
        }
    }
}

/// Every command a client may send on the canonical contract, by name
/// (each names a [`ClientCommand`]).
pub const COMMANDS: [&str; 14] = [
    kinds::AUTH,
    kinds::PING,
    kinds::MESSAGE_SEND,
    kinds::MESSAGE_READ,
    kinds::MESSAGE_DELIVERED,
    kinds::SYNC,
    kinds::TYPING,
    kinds::PRESENCE_QUERY,
    kinds::REACTION_ADD,
    kinds::REACTION_REMOVE,
    kinds::CALL_OFFER,
    kinds::CALL_ANSWER,
    kinds::CALL_ICE,
    kinds::CALL_END,
];

/// The command named `name`, if there is one.
fn command_kind(name: &str) -> Option<&'static str> {
    COMMANDS.into_iter().find(|kind| *kind == name)
}

/// Decodes a client frame's bytes in `encoding` into its command.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<ClientFrame, FrameError> {
    let decoded = match encoding {
        Encoding::Dialect(dialect) => return dialect.decode(bytes),
        // A compact connection's commands are ordinary JSON.
        Encoding::Json | Encoding::CompactJson => {
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            FrameSeed
                .deserialize(&mut deserializer)
                .and_then(|frame| deserializer.end().map(|()| frame))
                .map_err(|error| error.to_string())
        }
        Encoding::MsgPack => {
            let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
            FrameSeed.deserialize(&mut deserializer).map_err(|error| error.to_string())
        }
    };
    decoded.map_err(|detail| explain(bytes, encoding, detail))
}

/// The `type` and `id` of a frame that did not decode, read leniently.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
}

fn explain(bytes: &[u8], encoding: Encoding, detail: String) -> FrameError {
    let header: Option<Header> = match encoding {
        Encoding::Json | Encoding::CompactJson => serde_json::from_slice(bytes).ok(),
        Encoding::MsgPack => rmp_serde::from_slice(bytes).ok(),
        Encoding::Dialect(_) => None,
    };
    match header {
        None => FrameError::Malformed(detail),
        Some(Header { kind, id }) => match command_kind(&kind) {
            None => FrameError::Unknown { id, kind },
            Some(kind) => FrameError::Invalid { id, kind, detail },
        },
    }
}

/// Reads the envelope `{type, id?, data?, ref?, timestamp?}` in one pass:
/// `data` is decoded straight into the command `type` names. Only a frame
/// whose `data` comes before its `type` has its `data` held as a value
/// until the type is known.
struct FrameSeed;

impl<'de> DeserializeSeed<'de> for FrameSeed {
    type Value = ClientFrame;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ClientFrame, D::Error> {
        deserializer.deserialize_map(FrameVisitor)
    }
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = ClientFrame;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a frame {type, id?, data}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ClientFrame, A::Error> {
        let mut kind: Option<&'static str> = None;
        let mut id: Option<String> = None;
        let mut command: Option<ClientCommand> = None;
        let mut early_data: Option<serde_json::Value> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => {
                    let name: TypeName = map.next_value()?;
                    kind = Some(name.0);
                }
                Key::Id => id = map.next_value()?,
                Key::Data => match kind {
                    Some(kind) => command = Some(map.next_value_seed(DataSeed(kind))?),
                    None => early_data = Some(map.next_value()?),
                },
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
        let command = match command {
            Some(command) => command,
            // `data` before `type`, or none at all (as `ping` may send).
            None => {
                DataSeed(kind).deserialize(early_data.unwrap_or(serde_json::Value::Null)).map_err(A::Error::custom)?
            }
        };
        Ok(ClientFrame { id, command })
    }
}

enum Key {
    Type,
    Id,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
                Ok(match name {
                    "type" => Key::Type,
                    "id" => Key::Id,
                    "data" => Key::Data,
                    _ => Key::Other,
                })
            }
            fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Key, E> {
                std::str::from_utf8(name).map_or(Ok(Key::Other), |name| self.visit_str(name))
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A command name, looked up without allocating.
struct TypeName(&'static str);

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = TypeName;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a command name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<TypeName, E> {
                command_kind(name).map(TypeName).ok_or_else(|| E::custom(format!("unknown command {name:?}")))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// Decodes `data` as the command `.0` names.
struct DataSeed(&'static str);

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = ClientCommand;

    fn deserialize<D: Deserializer<'de>>(self, data: D) -> Result<ClientCommand, D::Error> {
        Ok(match self.0 {
            kinds::AUTH => ClientCommand::Auth(Auth::deserialize(data)?),
            kinds::PING => {
                IgnoredAny::deserialize(data)?;
                ClientCommand::Ping
            }
            kinds::MESSAGE_SEND => ClientCommand::Send(Box::new(SendMessage::deserialize(data)?)),
            kinds::MESSAGE_READ => ClientCommand::Read(Read::deserialize(data)?),
            kinds::MESSAGE_DELIVERED => ClientCommand::Delivered(Delivered::deserialize(data)?),
            kinds::SYNC => ClientCommand::Sync(Sync::deserialize(data)?),
            kinds::TYPING => ClientCommand::Typing(Typing::deserialize(data)?),
            kinds::PRESENCE_QUERY => ClientCommand::PresenceQuery(PresenceQuery::deserialize(data)?),
            kinds::REACTION_ADD => ClientCommand::ReactionAdd(Reaction::deserialize(data)?),
            kinds::REACTION_REMOVE => ClientCommand::ReactionRemove(Reaction::deserialize(data)?),
            kinds::CALL_OFFER => ClientCommand::CallOffer(CallOffer::deserialize(data)?),
            kinds::CALL_ANSWER => ClientCommand::CallAnswer(CallAnswer::deserialize(data)?),
            kinds::CALL_ICE => ClientCommand::CallIce(CallIce::deserialize(data)?),
            kinds::CALL_END => ClientCommand::CallEnd(CallEnd::deserialize(data)?),
            other => return Err(D::Error::custom(format!("unknown command {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ClientCommand, FrameError, Typing, decode};
    use crate::frame::Encoding;

    fn msgpack(value: &serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap()
    }

    #[test]
    fn commands_decode_in_either_encoding_whatever_the_field_order() {
        let frame = json!({"type": "typing", "id": "c1", "data": {"chat_id": 3, "is_typing": true}});
        let text = frame.to_string();
        for decoded in [decode(text.as_bytes(), Encoding::Json), decode(&msgpack(&frame), Encoding::MsgPack)] {
            let decoded = decoded.unwrap();
            assert_eq!(decoded.id.as_deref(), Some("c1"));
            assert_eq!(decoded.command, ClientCommand::Typing(Typing { chat_id: 3, is_typing: true }));
        }
        let data_first = r#"{"data":{"chat_id":3,"is_typing":false},"timestamp":"x","type":"typing"}"#;
        let decoded = decode(data_first.as_bytes(), Encoding::Json).unwrap();
        assert_eq!(decoded.command, ClientCommand::Typing(Typing { chat_id: 3, is_typing: false }));
        assert_eq!(decode(br#"{"type":"ping"}"#, Encoding::Json).unwrap().command, ClientCommand::Ping);
        let send = decode(br#"{"type":"message.send","data":{"chat_id":1,"content":"hi"}}"#, Encoding::Json).unwrap();
        assert!(matches!(send.command, ClientCommand::Send(ref send) if send.content == "hi"));
    }

    #[test]
    fn refusals_say_what_and_keep_the_id() {
        assert!(matches!(decode(b"not json", Encoding::Json), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(br#"{"id":"1"}"#, Encoding::Json), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(b"\xc1", Encoding::MsgPack), Err(FrameError::Malformed(_))));
        let unknown = decode(br#"{"type":"teleport","id":"9","data":{}}"#, Encoding::Json).unwrap_err();
        assert_eq!(unknown, FrameError::Unknown { id: Some("9".into()), kind: "teleport".into() });
        let invalid = decode(br#"{"type":"sync","id":"4","data":{"chat_id":"x"}}"#, Encoding::Json).unwrap_err();
        assert!(matches!(&invalid, FrameError::Invalid { kind: "sync", .. }), "{invalid:?}");
        assert_eq!(invalid.id(), Some("4"));
        assert!(invalid.to_string().starts_with("invalid sync data"), "{invalid}");
        let trailing = decode(br#"{"type":"ping"} {"#, Encoding::Json);
        assert!(trailing.is_err(), "one frame is one envelope");
    }
}
