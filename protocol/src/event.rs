use serde::{Deserialize, Serialize};

use crate::time;

/// The one envelope of every realtime frame, both ways:
/// `{type, id?, ref?, data, timestamp}`, with `data` as an untyped value.
/// Events the server pushes carry no `id`; a reply to a client command
/// carries the command's `id` as `ref`.
///
/// This is the client's view of a frame (tests, tools): the server decodes
/// commands into [`crate::ClientCommand`] and sends [`crate::ServerEvent`]s,
/// never this.
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

/// Frame names of the canonical contract (seed 002) and the engine's
/// additions, in one place: every crate (the load generator included)
/// names frames through these.
pub mod kinds {
    // ---- server events ----
    pub const CONNECT: &str = "connect";
    pub const ERROR: &str = "error";
    pub const PONG: &str = "pong";
    pub const MESSAGE_NEW: &str = "message.new";
    pub const MESSAGE_ACK: &str = "message.ack";
    pub const MESSAGE_EDIT: &str = "message.edit";
    pub const MESSAGE_DELETE: &str = "message.delete";
    pub const MESSAGE_PIN: &str = "message.pin";
    pub const MESSAGE_STATUS: &str = "message.status";
    pub const MESSAGE_READ_OK: &str = "message.read.ok";
    pub const SYNC_BATCH: &str = "sync.batch";
    pub const CHAT_UPDATED: &str = "chat.updated";
    pub const CHAT_MEMBER_ADDED: &str = "chat.member_added";
    pub const CHAT_MEMBER_REMOVED: &str = "chat.member_removed";
    pub const TYPING: &str = "typing";
    pub const PRESENCE: &str = "presence";
    pub const PRESENCE_STATE: &str = "presence.state";
    pub const CALL_RINGING: &str = "call.ringing";
    pub const CALL_OFFER: &str = "call.offer";
    pub const CALL_ANSWER: &str = "call.answer";
    pub const CALL_ICE: &str = "call.ice";
    pub const CALL_END: &str = "call.end";
    /// A notification for the user (a match, a system notice): made by the
    /// server API of app backends, re-shaped by each dialect.
    pub const NOTIFICATION_NEW: &str = "notification.new";
    /// The user read one notification, or all of them (on any device).
    pub const NOTIFICATION_READ: &str = "notification.read";
    /// A member added or removed a reaction.
    pub const MESSAGE_REACTION: &str = "message.reaction";
    /// A transient event an app backend published; nothing is stored.
    pub const CUSTOM: &str = "custom";
    /// Not a frame: tells the gateway to close the user's connections
    /// (4001 and the reason it carries). Never written to a client.
    pub const DISCONNECT: &str = "disconnect";

    // ---- client commands (typing and the call frames share their names with events) ----
    pub const AUTH: &str = "auth";
    pub const PING: &str = "ping";
    pub const MESSAGE_SEND: &str = "message.send";
    pub const MESSAGE_READ: &str = "message.read";
    pub const MESSAGE_DELIVERED: &str = "message.delivered";
    pub const SYNC: &str = "sync";
    pub const PRESENCE_QUERY: &str = "presence.query";
    pub const REACTION_ADD: &str = "reaction.add";
    pub const REACTION_REMOVE: &str = "reaction.remove";

    /// Every event name the server sends.
    pub const SERVER: [&str; 27] = [
        CONNECT,
        ERROR,
        PONG,
        MESSAGE_NEW,
        MESSAGE_ACK,
        MESSAGE_EDIT,
        MESSAGE_DELETE,
        MESSAGE_PIN,
        MESSAGE_STATUS,
        MESSAGE_READ_OK,
        SYNC_BATCH,
        CHAT_UPDATED,
        CHAT_MEMBER_ADDED,
        CHAT_MEMBER_REMOVED,
        TYPING,
        PRESENCE,
        PRESENCE_STATE,
        CALL_RINGING,
        CALL_OFFER,
        CALL_ANSWER,
        CALL_ICE,
        CALL_END,
        NOTIFICATION_NEW,
        NOTIFICATION_READ,
        MESSAGE_REACTION,
        CUSTOM,
        DISCONNECT,
    ];

    /// The server event named `name`, as the static name.
    pub fn server_kind(name: &str) -> Option<&'static str> {
        SERVER.into_iter().find(|kind| *kind == name)
    }
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
