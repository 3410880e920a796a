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
}

fn text_kind() -> String {
    "text".into()
}
