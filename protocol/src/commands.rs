//! Client commands whose bodies are shared by REST and WebSocket.

use serde::{Deserialize, Serialize};

/// A message to send: the body of `POST /api/chats/{id}/messages` and the
/// data of the `message.send` command (which also names `chat_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// Required over WebSocket; REST takes it from the path.
    #[serde(default)]
    pub chat_id: Option<i64>,
    #[serde(default)]
    pub content: String,
    #[serde(rename = "type", default = "text_kind")]
    pub kind: String,
    #[serde(default)]
    pub client_message_id: Option<String>,
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub file_size: u64,
    #[serde(default)]
    pub file_url: String,
    /// An uploaded file, by id: the server fills in `file_url`,
    /// `file_name`, `file_size` and `thumbnail` from its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<i64>,
    #[serde(default)]
    pub thumbnail: String,
    #[serde(default)]
    pub reply_to_id: Option<i64>,
    #[serde(default)]
    pub forward_from: Option<i64>,
    /// Seconds the message lives; 0 for ever.
    #[serde(default)]
    pub ttl: u64,
    /// ISO 8601; a time in the future holds the message until then.
    #[serde(default)]
    pub send_at: Option<String>,
    #[serde(default)]
    pub is_silent: bool,
    /// Pixels, for images and videos (seed 000's media fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Seconds, for voice and video.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    /// Anything else the client attaches (a JSON object), stored and shown as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Value>,
}

impl Default for SendMessage {
    fn default() -> Self {
        Self {
            chat_id: None,
            content: String::new(),
            kind: text_kind(),
            client_message_id: None,
            file_name: String::new(),
            file_size: 0,
            file_url: String::new(),
            file_id: None,
            thumbnail: String::new(),
            reply_to_id: None,
            forward_from: None,
            ttl: 0,
            send_at: None,
            is_silent: false,
            width: None,
            height: None,
            duration: None,
            extra: None,
        }
    }
}

fn text_kind() -> String {
    "text".into()
}
