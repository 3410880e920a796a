use serde::{Deserialize, Serialize};

use crate::time;

/// The one envelope of every realtime frame, both ways:
/// `{type, id?, ref?, data, timestamp}`. Events the server pushes carry no
/// `id`; a reply to a client command carries the command's `id` as `ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `message.new`, `typing`, `presence`, ...
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    #[serde(default)]
    pub timestamp: String,
}

impl Event {
    /// A server event of `kind` carrying `data`, stamped now.
    pub fn new(kind: impl Into<String>, data: impl Serialize) -> Self {
        Self {
            kind: kind.into(),
            id: None,
            reference: None,
            data: serde_json::to_value(data).unwrap_or(serde_json::Value::Null),
            timestamp: time::to_iso(time::now_millis()),
        }
    }
}

/// Event names of the canonical contract (seed 002) and the engine's
/// additions, in one place.
pub mod kinds {
    pub const MESSAGE_NEW: &str = "message.new";
    pub const MESSAGE_EDIT: &str = "message.edit";
    pub const MESSAGE_DELETE: &str = "message.delete";
    pub const MESSAGE_PIN: &str = "message.pin";
    pub const MESSAGE_STATUS: &str = "message.status";
    pub const CHAT_UPDATED: &str = "chat.updated";
    pub const CHAT_MEMBER_ADDED: &str = "chat.member_added";
    pub const CHAT_MEMBER_REMOVED: &str = "chat.member_removed";
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn envelope_shape() {
        let event = Event::new("message.new", serde_json::json!({"id": 1}));
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "message.new");
        assert_eq!(value["data"]["id"], 1);
        assert!(value.get("id").is_none() && value.get("ref").is_none());
        let reply: Event = serde_json::from_str(r#"{"type":"pong","ref":"c1","data":{}}"#).unwrap();
        assert_eq!(reply.reference.as_deref(), Some("c1"));
    }
}
