//! Seed 000 (the dating app): its error codes (section 1.3) and its
//! WebSocket protocol (section 7), `{type, data, timestamp}` with a
//! millisecond `timestamp` on every frame.
//!
//! | client → server | command |
//! | --- | --- |
//! | `ping` | `pong` back |
//! | `auth` `{token}` | `auth_success` back (also sent at once when the URL carried the token) |
//! | `message` `{conversation_id, content, client_message_id, type?, media_url?, thumbnail?, width?, height?, duration?, extra?}` | `message_ack` back; the others get `new_message` |
//! | `typing` `{conversation_id, is_typing?}` | the others get `user_typing` |
//! | `read` `{conversation_id, last_read_message_id}` (an addition) | `read_ok` back; the sender gets `message_status` `read` |
//! | `delivered` `{conversation_id, message_ids}` (an addition) | each sender gets `message_status` `delivered` |
//!
//! Server pushes: `new_message`, `message_status` (`delivered`, `read`,
//! `recalled`), `user_typing`, `match_notification`, `system_notification`,
//! and `error` `{code, message}` with section 1.3's codes.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::client::{Auth, ClientCommand, ClientFrame, Delivered, FrameError, Read, Typing};
use crate::commands::SendMessage;
use crate::time::Millis;
use crate::{ErrorCode, kinds};

/// Seed 000's code and HTTP status for a canonical error.
pub fn error_code(code: ErrorCode) -> (u32, u16) {
    match code {
        ErrorCode::Unauthorized => (40101, 401),
        ErrorCode::TokenExpired => (40102, 401),
        ErrorCode::TokenInvalid => (40103, 401),
        ErrorCode::Forbidden
        | ErrorCode::NotChatMember
        | ErrorCode::MessageForbidden
        | ErrorCode::BlockedByRecipient => (40301, 403),
        ErrorCode::UserDisabled => (40302, 403),
        ErrorCode::NotFound
        | ErrorCode::UserNotFound
        | ErrorCode::ChatNotFound
        | ErrorCode::MessageNotFound
        | ErrorCode::FileNotFound => (40401, 404),
        ErrorCode::Conflict | ErrorCode::PhoneExists | ErrorCode::UsernameExists => (40901, 409),
        ErrorCode::TooManyRequests => (42901, 429),
        ErrorCode::PayloadTooLarge | ErrorCode::FileTooLarge => (40001, 413),
        ErrorCode::Unavailable => (50002, 503),
        ErrorCode::Internal => (50001, 500),
        // Wrong credentials, bad files and bad fields: a bad parameter.
        _ => (40001, 400),
    }
}

/// Section 1.2's error body for a canonical error: `{code, message, data,
/// timestamp, request_id}`, with field errors in `data.errors`.
pub fn error_body(code: ErrorCode, detail: &str, errors: &[Value], request_id: &str) -> (u16, Value) {
    let (ours, status) = error_code(code);
    let data = if errors.is_empty() { Value::Null } else { json!({ "errors": errors }) };

    let body = json!({
        "code": ours,
        "message": detail,
        "data": data,
        "timestamp": crate::time::now_millis(),
        "request_id": request_id,
    });
    (status, body)
}

/// The code of a missing required parameter.
pub const MISSING_PARAMETER: u32 = 40002;

// Frame names of section 7.3, and this engine's additions.
pub const PING: &str = "ping";
pub const PONG: &str = "pong";
pub const AUTH: &str = "auth";
pub const AUTH_SUCCESS: &str = "auth_success";
pub const MESSAGE: &str = "message";
pub const MESSAGE_ACK: &str = "message_ack";
pub const NEW_MESSAGE: &str = "new_message";
pub const MESSAGE_STATUS: &str = "message_status";
pub const TYPING: &str = "typing";
pub const USER_TYPING: &str = "user_typing";
pub const READ: &str = "read";
pub const READ_OK: &str = "read_ok";
pub const DELIVERED: &str = "delivered";
pub const MATCH_NOTIFICATION: &str = "match_notification";
pub const SYSTEM_NOTIFICATION: &str = "system_notification";
pub const ERROR: &str = "error";

/// Seed 000's message body: the `message` frame's data (which names its
/// conversation) and the body of `POST /conversations/{id}/messages`.
#[derive(Debug, Deserialize)]
pub struct MessageBody {
    /// Required in the frame; the REST path names it instead.
    #[serde(default)]
    pub conversation_id: Option<i64>,
    #[serde(default)]
    content: String,
    #[serde(rename = "type", default = "text")]
    kind: String,
    #[serde(default)]
    client_message_id: Option<String>,
    #[serde(default)]
    media_url: String,
    #[serde(default)]
    thumbnail: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    duration: Option<u32>,
    #[serde(default)]
    extra: Option<Value>,
}

fn text() -> String {
    "text".into()
}

impl MessageBody {
    /// The canonical send of this body into `chat_id`.
    pub fn into_command(self, chat_id: i64) -> SendMessage {
        SendMessage {
            chat_id: Some(chat_id),
            kind: self.kind,
            content: self.content,
            client_message_id: self.client_message_id,
            file_url: self.media_url,
            thumbnail: self.thumbnail,
            width: self.width,
            height: self.height,
            duration: self.duration,
            extra: self.extra,
            ..SendMessage::default()
        }
    }
}

#[derive(Deserialize)]
struct TypingData {
    conversation_id: i64,
    #[serde(default = "yes")]
    is_typing: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct DeliveredData {
    conversation_id: i64,
    message_ids: Vec<i64>,
}

#[derive(Deserialize)]
struct ReadData {
    conversation_id: i64,
    last_read_message_id: i64,
}

/// Decodes a seed 000 client frame.
pub fn decode(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    let (mut value, kind, id) = super::header(bytes)?;
    let command = match kind.as_str() {
        PING => ClientCommand::Ping,
        AUTH => {
            // `{"type":"auth","data":{"token":...}}`, or the token beside the type.
            let data = super::data_of(&mut value);
            let token = data.get("token").or_else(|| value.get("token")).cloned().unwrap_or(Value::Null);
            let auth: Auth = super::typed(json!({ "token": token }), id.as_ref(), kinds::AUTH)?;
            ClientCommand::Auth(auth)
        }
        MESSAGE => {
            let data: MessageBody = super::typed(super::data_of(&mut value), id.as_ref(), kinds::MESSAGE_SEND)?;
            let Some(chat_id) = data.conversation_id else {
                let detail = "missing field `conversation_id`".to_owned();
                return Err(FrameError::Invalid { id, kind: kinds::MESSAGE_SEND, detail });
            };
            ClientCommand::Send(Box::new(data.into_command(chat_id)))
        }
        TYPING => {
            let data: TypingData = super::typed(super::data_of(&mut value), id.as_ref(), kinds::TYPING)?;
            ClientCommand::Typing(Typing { chat_id: data.conversation_id, is_typing: data.is_typing })
        }
        READ => {
            let data: ReadData = super::typed(super::data_of(&mut value), id.as_ref(), kinds::MESSAGE_READ)?;
            ClientCommand::Read(Read { chat_id: data.conversation_id, message_id: data.last_read_message_id })
        }
        DELIVERED => {
            let data: DeliveredData = super::typed(super::data_of(&mut value), id.as_ref(), kinds::MESSAGE_DELIVERED)?;
            ClientCommand::Delivered(Delivered { chat_id: data.conversation_id, message_ids: data.message_ids })
        }
        _ => return Err(FrameError::Unknown { id, kind }),
    };
    Ok(ClientFrame { id, command })
}

/// Copies `keys` of `from` that are present and not null into `to`.
fn copy(to: &mut Map<String, Value>, from: &Value, keys: &[(&str, &str)]) {
    for (theirs, ours) in keys {
        if let Some(value) = from.get(*ours).filter(|value| !value.is_null()) {
            to.insert((*theirs).to_owned(), value.clone());
        }
    }
}

/// A canonical message view as seed 000's message object (`new_message`,
/// REST history and send).
pub fn message(view: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    copy(
        &mut out,
        view,
        &[
            ("message_id", "id"),
            ("conversation_id", "chat_id"),
            ("sender_id", "sender_id"),
            ("type", "type"),
            ("content", "content"),
            ("seq", "seq"),
            ("client_message_id", "client_message_id"),
            ("sent_at", "created_at"),
            ("width", "width"),
            ("height", "height"),
            ("duration", "duration"),
            ("extra", "extra"),
        ],
    );
    for (theirs, ours) in [("media_url", "file_url"), ("thumbnail", "thumbnail")] {
        if let Some(url) = view.get(ours).and_then(Value::as_str).filter(|url| !url.is_empty()) {
            out.insert(theirs.to_owned(), Value::from(url));
        }
    }
    if view.get("is_deleted").and_then(Value::as_bool) == Some(true) {
        out.insert("is_recalled".into(), Value::Bool(true));
    }
    out
}

/// A canonical event as a seed 000 frame; `None` for events the dating
/// app has no frame for (presence, calls, chat administration).
pub fn encode(kind: &str, data: &Value, reference: Option<&str>, at: Millis) -> Option<super::Outgoing> {
    let (name, payload): (&str, Option<Value>) = match kind {
        kinds::CONNECT => (
            AUTH_SUCCESS,
            Some(json!({
                "user_id": data["user_id"],
                "session_id": data["session_id"],
                "heartbeat_interval": data["heartbeat_interval"],
            })),
        ),
        kinds::PONG => (PONG, None),
        kinds::ERROR => {
            let code = data["code"].as_u64().and_then(|code| u32::try_from(code).ok());
            let code = code.and_then(ErrorCode::from_code).map_or(50001, |code| error_code(code).0);
            (ERROR, Some(json!({ "code": code, "message": data["message"] })))
        }
        kinds::MESSAGE_NEW => (NEW_MESSAGE, Some(Value::Object(message(data)))),
        kinds::MESSAGE_ACK => {
            let mut ack = message(&data["message"]);
            ack.insert("status".into(), Value::from("sent"));
            ack.insert("duplicate".into(), data["duplicate"].clone());
            ack.insert("is_me".into(), Value::Bool(true));
            (MESSAGE_ACK, Some(Value::Object(ack)))
        }
        kinds::MESSAGE_STATUS => (
            MESSAGE_STATUS,
            Some(json!({
                "conversation_id": data["chat_id"],
                "message_id": data["message_id"],
                "seq": data["seq"],
                "user_id": data["user_id"],
                "status": data["status"],
            })),
        ),
        kinds::MESSAGE_DELETE => (
            MESSAGE_STATUS,
            Some(json!({
                "conversation_id": data["chat_id"],
                "message_id": data["id"],
                "seq": data["seq"],
                "status": "recalled",
                "recalled_at": data["deleted_at"],
            })),
        ),
        kinds::MESSAGE_READ_OK => {
            (READ_OK, Some(json!({ "conversation_id": data["chat_id"], "last_read_seq": data["last_read_seq"] })))
        }
        kinds::TYPING => (
            USER_TYPING,
            Some(json!({
                "conversation_id": data["chat_id"],
                "user_id": data["user_id"],
                "is_typing": data["is_typing"],
            })),
        ),
        kinds::NOTIFICATION_NEW => {
            let name = if data["type"] == "match" { MATCH_NOTIFICATION } else { SYSTEM_NOTIFICATION };
            (name, Some(data.clone()))
        }
        _ => return None,
    };
    let mut fields = Map::new();
    if let Some(payload) = payload {
        fields.insert("data".into(), payload);
    }
    fields.insert("timestamp".into(), Value::from(at));
    Some(super::Outgoing { kind: name, reference: reference.map(str::to_owned), fields })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{decode, encode};
    use crate::client::{ClientCommand, FrameError};
    use crate::{ErrorCode, kinds};

    #[test]
    fn section_seven_frames_decode_into_commands() {
        let ping = decode(br#"{"type":"ping","timestamp":1707139200000}"#).unwrap();
        assert_eq!(ping.command, ClientCommand::Ping);
        let auth = decode(br#"{"type":"auth","data":{"token":"t"}}"#).unwrap();
        assert!(matches!(auth.command, ClientCommand::Auth(auth) if auth.token == "t"));
        let send = decode(
            br#"{"type":"message","data":{"conversation_id":1001,"content":"hi","client_message_id":"c1"},"timestamp":1}"#,
        )
        .unwrap();
        let ClientCommand::Send(send) = send.command else { panic!("a send") };
        assert_eq!((send.chat_id, send.content.as_str(), send.kind.as_str()), (Some(1001), "hi", "text"));
        assert_eq!(send.client_message_id.as_deref(), Some("c1"));
        let image = decode(
            br#"{"type":"message","data":{"conversation_id":1,"type":"image","media_url":"/f/1","width":4,"height":3}}"#,
        )
        .unwrap();
        let ClientCommand::Send(image) = image.command else { panic!("a send") };
        assert_eq!((image.file_url.as_str(), image.width, image.height), ("/f/1", Some(4), Some(3)));
        let delivered = decode(br#"{"type":"delivered","data":{"conversation_id":7,"message_ids":[1,2]}}"#).unwrap();
        assert!(matches!(delivered.command, ClientCommand::Delivered(d) if d.chat_id == 7 && d.message_ids == [1, 2]));
        let typing = decode(br#"{"type":"typing","data":{"conversation_id":7}}"#).unwrap();
        assert!(matches!(typing.command, ClientCommand::Typing(typing) if typing.chat_id == 7 && typing.is_typing));
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        assert!(matches!(decode(b"not json"), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(br#"{"data":{}}"#), Err(FrameError::Malformed(_))));
        assert!(matches!(decode(br#"{"type":"dance"}"#), Err(FrameError::Unknown { .. })));
        let missing = decode(br#"{"type":"message","id":"9","data":{"content":"no conversation"}}"#).unwrap_err();
        assert!(matches!(&missing, FrameError::Invalid { id: Some(id), .. } if id == "9"), "{missing:?}");
    }

    #[test]
    fn canonical_events_take_seed_000_shapes() {
        let view = json!({"id": 5, "chat_id": 9, "seq": 3, "sender_id": 2, "client_message_id": "c", "content": "hi",
            "type": "text", "file_url": "", "thumbnail": "", "is_deleted": false, "created_at": "2026-02-05T10:30:00.000Z"});
        let pushed = encode(kinds::MESSAGE_NEW, &view, None, 1_707_139_200_000).unwrap().to_value();
        assert_eq!(pushed["type"], "new_message");
        assert_eq!(pushed["timestamp"], 1_707_139_200_000_i64, "milliseconds");
        assert_eq!(pushed["data"]["message_id"], 5);
        assert_eq!(pushed["data"]["conversation_id"], 9);
        assert_eq!(pushed["data"]["sent_at"], "2026-02-05T10:30:00.000Z");
        assert!(pushed["data"].get("media_url").is_none(), "no empty media fields");

        let recalled =
            encode(kinds::MESSAGE_DELETE, &json!({"id": 5, "chat_id": 9, "seq": 3}), None, 0).unwrap().to_value();
        assert_eq!(
            (recalled["type"].as_str(), recalled["data"]["status"].as_str()),
            (Some("message_status"), Some("recalled"))
        );
        let typing =
            encode(kinds::TYPING, &json!({"chat_id": 9, "user_id": 2, "is_typing": true}), None, 0).unwrap().to_value();
        assert_eq!(typing["type"], "user_typing");
        let error =
            encode(kinds::ERROR, &json!({"code": ErrorCode::NotChatMember.code(), "message": "no"}), Some("4"), 0);
        let error = error.unwrap().to_value();
        assert_eq!((error["data"]["code"].as_u64(), error["ref"].as_str()), (Some(40301), Some("4")));
        assert_eq!(
            encode(kinds::PONG, &json!({}), None, 77).unwrap().to_value(),
            json!({"type": "pong", "timestamp": 77})
        );

        let matched = json!({"id": 1, "type": "match", "title": "t", "body": "b", "data": {"match_id": 5001}});
        assert_eq!(encode(kinds::NOTIFICATION_NEW, &matched, None, 0).unwrap().kind, "match_notification");
        let system = json!({"id": 2, "type": "maintenance", "title": "t", "body": "b", "data": null});
        assert_eq!(encode(kinds::NOTIFICATION_NEW, &system, None, 0).unwrap().kind, "system_notification");
        assert!(encode(kinds::PRESENCE, &json!({}), None, 0).is_none(), "no frame for presence");
    }
}
