//! Seed 001 (the simple chat): ids are strings, errors are
//! `{code: <HTTP status>, message, error}`. The document names a
//! WebSocket (`GET /api/v1/ws`, Bearer token) but no frames, so these fit
//! its REST shapes, `{type, data, timestamp}` with an ISO `timestamp`:
//!
//! | client → server | what it does |
//! | --- | --- |
//! | `ping` | `pong` back |
//! | `typing` `{chat_id or group_id, is_typing?}` | the others get `typing` |
//! | `read` `{chat_id, message_id}` | the others get `read` |
//!
//! Server pushes: `connected` `{user_id}`, `message` (the message object of
//! section 3.2, plus `chat_id`), `read` `{chat_id, message_id, user_id}`,
//! `typing` `{chat_id, user_id, is_typing}`, `delete` `{chat_id,
//! message_id}`, and `error` `{code, message, error}`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Audience;
use crate::client::{ClientCommand, ClientFrame, FrameError, Read, Typing};
use crate::time::{Millis, to_iso};
use crate::{ErrorCode, kinds};

pub const CONNECTED: &str = "connected";
pub const PING: &str = "ping";
pub const PONG: &str = "pong";
pub const MESSAGE: &str = "message";
pub const READ: &str = "read";
pub const TYPING: &str = "typing";
pub const DELETE: &str = "delete";
pub const ERROR: &str = "error";

/// Seed 001's `code` for a canonical error: its HTTP status.
pub fn error_code(code: ErrorCode) -> u16 {
    code.http_status()
}

/// The document's error body: `{code: <HTTP status>, message, error}`.
pub fn error_body(code: ErrorCode, detail: &str) -> (u16, Value) {
    let status = error_code(code);
    (status, json!({ "code": status, "message": code.message(), "error": detail }))
}

/// An id as seed 001 writes it: a string (`""` when absent).
pub fn id(value: &Value) -> Value {
    match value {
        Value::Number(number) => Value::String(number.to_string()),
        Value::String(text) => Value::String(text.clone()),
        _ => Value::String(String::new()),
    }
}

/// An id a seed 001 client sent: a string or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireId(pub i64);

impl<'de> Deserialize<'de> for WireId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(id) => Ok(Self(id)),
            Either::Text(text) => {
                text.trim().parse().map(Self).map_err(|_| serde::de::Error::custom(format!("{text:?} is not an id")))
            }
        }
    }
}

#[derive(Deserialize)]
struct TypingData {
    #[serde(default)]
    chat_id: Option<WireId>,
    #[serde(default)]
    group_id: Option<WireId>,
    #[serde(default = "yes")]
    is_typing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ReadData {
    chat_id: WireId,
    message_id: WireId,
}

/// Decodes a seed 001 client frame.
pub fn decode(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    let (mut value, kind, id) = super::header(bytes)?;
    let command = match kind.as_str() {
        PING => ClientCommand::Ping,
        TYPING => {
            let data: TypingData = super::typed(super::data_of(&mut value), id.as_ref(), kinds::TYPING)?;
            let Some(WireId(chat_id)) = data.chat_id.or(data.group_id) else {
                let detail = "typing needs chat_id or group_id".to_owned();
                return Err(FrameError::Invalid { id, kind: kinds::TYPING, detail });
            };
            ClientCommand::Typing(Typing { chat_id, is_typing: data.is_typing })
        }
        READ => {
            let data: ReadData = super::typed(super::data_of(&mut value), id.as_ref(), kinds::MESSAGE_READ)?;
            ClientCommand::Read(Read { chat_id: data.chat_id.0, message_id: data.message_id.0 })
        }
        _ => return Err(FrameError::Unknown { id, kind }),
    };
    Ok(ClientFrame { id, command })
}

/// A canonical message view as section 3.2's message object (the REST
/// answers and the pushed `message` alike): `receiver_id` names the other
/// person of a private chat, `group_id` the group; `chat_id` is an
/// addition (what `typing` and `read` name). A message with a file (an
/// image, a file) carries its URL as `content`, the one field the
/// document has for it.
pub fn message(view: &Value, audience: Audience) -> Map<String, Value> {
    let sender = view["sender_id"].as_i64().unwrap_or_default();
    let (receiver, group) = match audience.private_pair {
        Some(pair) => (pair.into_iter().find(|user| *user != sender).map_or(Value::Null, Value::from), Value::Null),
        None => (Value::Null, view["chat_id"].clone()),
    };
    let mut out = Map::new();
    out.insert("message_id".into(), id(&view["id"]));
    out.insert("type".into(), view["type"].clone());
    let url = view["file_url"].as_str().filter(|url| !url.is_empty());
    out.insert("content".into(), url.map_or_else(|| view["content"].clone(), Value::from));
    out.insert("sender_id".into(), id(&view["sender_id"]));
    out.insert("receiver_id".into(), id(&receiver));
    out.insert("group_id".into(), id(&group));
    out.insert("chat_id".into(), id(&view["chat_id"]));
    out.insert("created_at".into(), view["created_at"].clone());
    out
}

/// A canonical event as a seed 001 frame; `None` for events the simple
/// chat has no frame for.
pub fn encode(
    kind: &str,
    data: &Value,
    reference: Option<&str>,
    audience: Audience,
    at: Millis,
) -> Option<super::Outgoing> {
    let mut fields = Map::new();
    let (name, payload) = match kind {
        kinds::CONNECT => (CONNECTED, json!({ "user_id": id(&data["user_id"]) })),
        kinds::PONG => (PONG, Value::Null),
        kinds::ERROR => {
            let code = data["code"].as_u64().and_then(|code| u32::try_from(code).ok()).and_then(ErrorCode::from_code);
            let code = code.unwrap_or(ErrorCode::Internal);
            fields.insert("code".into(), Value::from(error_code(code)));
            fields.insert("message".into(), Value::from(code.message()));
            fields.insert("error".into(), data["message"].clone());
            (ERROR, Value::Null)
        }
        kinds::MESSAGE_NEW => (MESSAGE, Value::Object(message(data, audience))),
        kinds::MESSAGE_STATUS if data["status"] == "read" => (
            READ,
            json!({
                "chat_id": id(&data["chat_id"]),
                "message_id": id(&data["message_id"]),
                "user_id": id(&data["user_id"]),
            }),
        ),
        kinds::MESSAGE_READ_OK => (READ, json!({ "chat_id": id(&data["chat_id"]), "ok": true })),
        kinds::TYPING => (
            TYPING,
            json!({
                "chat_id": id(&data["chat_id"]),
                "user_id": id(&data["user_id"]),
                "is_typing": data["is_typing"],
            }),
        ),
        kinds::MESSAGE_DELETE => (DELETE, json!({ "chat_id": id(&data["chat_id"]), "message_id": id(&data["id"]) })),
        _ => return None,
    };
    if !payload.is_null() {
        fields.insert("data".into(), payload);
    }
    fields.insert("timestamp".into(), Value::from(to_iso(at)));
    Some(super::Outgoing { kind: name, reference: reference.map(str::to_owned), fields })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{decode, encode};
    use crate::client::{ClientCommand, FrameError};
    use crate::dialect::Audience;
    use crate::{ErrorCode, kinds};

    #[test]
    fn frames_decode_with_string_or_number_ids() {
        let typing = decode(br#"{"type":"typing","data":{"group_id":"12"}}"#).unwrap();
        assert!(matches!(typing.command, ClientCommand::Typing(t) if t.chat_id == 12 && t.is_typing));
        let read = decode(br#"{"type":"read","data":{"chat_id":3,"message_id":"44"}}"#).unwrap();
        assert!(matches!(read.command, ClientCommand::Read(r) if (r.chat_id, r.message_id) == (3, 44)));
        assert!(matches!(decode(br#"{"type":"typing","data":{}}"#), Err(FrameError::Invalid { .. })));
        assert!(matches!(
            decode(br#"{"type":"read","data":{"chat_id":"x","message_id":1}}"#),
            Err(FrameError::Invalid { .. })
        ));
        assert!(matches!(decode(br#"{"type":"message"}"#), Err(FrameError::Unknown { .. })), "sends are REST's");
    }

    #[test]
    fn a_private_message_names_the_other_person() {
        let view = json!({"id": 5, "chat_id": 9, "sender_id": 2, "content": "hi", "type": "text", "created_at": "t"});
        let private = Audience { private_pair: Some([2, 7]) };
        let pushed = encode(kinds::MESSAGE_NEW, &view, None, private, 0).unwrap().to_value();
        assert_eq!(pushed["type"], "message");
        assert_eq!(pushed["data"]["message_id"], "5");
        assert_eq!(
            (pushed["data"]["receiver_id"].as_str(), pushed["data"]["group_id"].as_str()),
            (Some("7"), Some(""))
        );
        let image =
            json!({"id": 6, "chat_id": 9, "sender_id": 2, "content": "", "file_url": "/api/files/3", "type": "image"});
        let pushed = encode(kinds::MESSAGE_NEW, &image, None, private, 0).unwrap().to_value();
        assert_eq!(pushed["data"]["content"], "/api/files/3", "a file's URL is its content");
        let grouped = encode(kinds::MESSAGE_NEW, &view, None, Audience::default(), 0).unwrap().to_value();
        assert_eq!(
            (grouped["data"]["receiver_id"].as_str(), grouped["data"]["group_id"].as_str()),
            (Some(""), Some("9"))
        );
        let error = json!({"code": ErrorCode::ChatNotFound.code(), "message": "chat 9 not found"});
        let error = encode(kinds::ERROR, &error, None, Audience::default(), 0).unwrap().to_value();
        assert_eq!((error["code"].as_u64(), error["error"].as_str()), (Some(404), Some("chat 9 not found")));
        let delivered = json!({"chat_id": 9, "message_id": 5, "user_id": 7, "status": "delivered"});
        assert!(encode(kinds::MESSAGE_STATUS, &delivered, None, Audience::default(), 0).is_none());
    }
}
