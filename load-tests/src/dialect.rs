//! The wire dialects the generator speaks, so one scenario can be run
//! against Switchboard, Centrifugo, a Socket.IO 4 server and the bare
//! ceiling server with the same client-side cost: every dialect sends the same payload
//! (`t:<micros>:<sender>:<n>`, `n` counting the sender's sends from 1) and
//! classifies frames by a prefix and one substring search, never by
//! parsing the whole frame. Acks and deliveries name the send they are
//! for, so a run can account for every one of them.

use std::fmt::Write as _;

use protocol::dialect::dating;
use protocol::frame::json_kind;
use protocol::kinds;

/// Which server protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Switchboard's gateway: `/ws?token=&batch=1&echo=0&compact=1`, `message.send` / `message.ack` / `message.new`.
    Switchboard,
    /// Engine.IO v4 over WebSocket with Socket.IO packets: auth in the
    /// CONNECT packet, a `join` per chat, `message.send` with an ack.
    #[value(name = "socketio")]
    #[serde(rename = "socketio")]
    SocketIo,
    /// The bare broadcast server of the bench crate: `/ws?room=`, text in,
    /// text out to the rest of the room, `a` back to the sender.
    Ceiling,
    /// Switchboard's seed 000 (dating app) WebSocket: `/v1?token=`,
    /// `message` / `message_ack` / `new_message`, against the same engine.
    Dating,
    /// Centrifugo v6's JSON client protocol: `connect` with a JWT, a
    /// `subscribe` to the chat's channel (`chat:<id>`), `publish` commands
    /// whose reply id is the send's number, deliveries as `push.pub`.
    Centrifugo,
}

/// The ids of Centrifugo's handshake commands: above every send's number.
const CENTRIFUGO_CONNECT_ID: u64 = 4_000_000_000;
const CENTRIFUGO_SUBSCRIBE_ID: u64 = CENTRIFUGO_CONNECT_ID + 1;

/// What one inbound frame means to the generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// The server accepted our send `n` (`None`: the dialect's acks name
    /// no send, and come in the order of the sends).
    Ack { n: Option<u64> },
    /// Send `n` of `sender`, from someone else: when it was sent
    /// (generator clock, µs).
    Delivery { sent_at_micros: u64, sender: i64, n: u64 },
    /// Our own message coming back (Switchboard echoes to every device).
    Echo,
    /// The server refused something.
    Error,
    /// A frame to answer right away (Engine.IO's ping).
    Reply(&'static str),
    /// Anything else (presence, connect, typing…).
    Other,
}

impl Dialect {
    /// The WebSocket URL of a connection for `token` in `chat`.
    pub fn ws_url(self, base: &str, token: &str, chat: i64) -> String {
        let ws = base.replacen("http", "ws", 1);
        match self {
            // Events that leave together arrive in one frame, a line each;
            // a sender takes its own messages from their acks; events
            // leave out their members at a default.
            Self::Switchboard => format!("{ws}/ws?token={token}&batch=1&echo=0&compact=1"),
            Self::SocketIo => format!("{ws}/socket.io/?EIO=4&transport=websocket"),
            Self::Ceiling => format!("{ws}/ws?room={chat}"),
            Self::Dating => format!("{ws}/v1?token={token}"),
            Self::Centrifugo => format!("{ws}/connection/websocket"),
        }
    }

    /// The messages of one inbound frame: Centrifugo's JSON protocol packs
    /// several replies and pushes into a frame, one per line. Every other
    /// dialect's frames are single-line JSON (or `a`), one message each.
    pub fn messages(self, frame: &str) -> std::str::Split<'_, char> {
        frame.split('\n')
    }

    /// The frames to send right after the upgrade, in order, each followed
    /// by waiting for a frame that [`Dialect::handshake_done`] accepts.
    pub fn handshake(self, token: &str, chat: i64) -> Vec<String> {
        match self {
            // The server speaks first (`connect`); nothing to send.
            Self::Switchboard | Self::Ceiling | Self::Dating => Vec::new(),
            // CONNECT to the main namespace with the token, then join the chat's room.
            Self::SocketIo => {
                vec![format!(r#"40{{"token":"{token}"}}"#), format!(r#"420["join",{{"chat_id":{chat}}}]"#)]
            }
            // Connect with the token, then subscribe to the chat's channel.
            Self::Centrifugo => vec![
                format!(r#"{{"id":{CENTRIFUGO_CONNECT_ID},"connect":{{"token":"{token}","name":"bench"}}}}"#),
                format!(r#"{{"id":{CENTRIFUGO_SUBSCRIBE_ID},"subscribe":{{"channel":"chat:{chat}"}}}}"#),
            ],
        }
    }

    /// Frames the server sends before the first handshake step (Switchboard's
    /// `connect` event, Engine.IO's OPEN packet).
    pub fn greets(self) -> bool {
        matches!(self, Self::Switchboard | Self::SocketIo | Self::Dating)
    }

    /// Whether `frame` answers handshake step `step` (0-based), or is the
    /// greeting when `step` is `None`.
    pub fn handshake_done(self, step: Option<usize>, frame: &str) -> bool {
        match (self, step) {
            (Self::Switchboard, None) => json_kind(frame) == Some(kinds::CONNECT),
            (Self::Dating, None) => json_kind(frame) == Some(dating::AUTH_SUCCESS),
            (Self::SocketIo, None) => frame.starts_with("0{"),
            (Self::SocketIo, Some(0)) => frame.starts_with("40{"),
            (Self::SocketIo, Some(1)) => frame.starts_with("430[") && !frame.contains("error"),
            (Self::Centrifugo, Some(step)) => {
                let id = if step == 0 { CENTRIFUGO_CONNECT_ID } else { CENTRIFUGO_SUBSCRIBE_ID };
                let reply = if step == 0 { "connect" } else { "subscribe" };
                let head = format!(r#"{{"id":{id},"{reply}":"#);
                self.messages(frame).any(|message| message.starts_with(&head))
            }
            _ => false,
        }
    }

    /// The frame that sends message `n` of `sender` into `chat` in run
    /// `run` (which keeps client message ids unique across runs against one
    /// server), stamped with the generator clock: the time it was due.
    pub fn send_frame(self, chat: i64, sender: i64, run: u64, n: u64, sent_at_micros: u64) -> String {
        let mut frame = String::with_capacity(160);
        // Writing to a String cannot fail.
        let _ = match self {
            Self::Switchboard => write!(
                frame,
                r#"{{"type":"message.send","id":"{n}","data":{{"chat_id":{chat},"content":"t:{sent_at_micros}:{sender}:{n}","client_message_id":"{sender}-{run}-{n}"}}}}"#
            ),
            Self::SocketIo => write!(
                frame,
                r#"42{n}["message.send",{{"chat_id":{chat},"content":"t:{sent_at_micros}:{sender}:{n}","client_message_id":"{sender}-{run}-{n}"}}]"#
            ),
            Self::Ceiling => write!(frame, r#"{{"content":"t:{sent_at_micros}:{sender}:{n}"}}"#),
            Self::Dating => write!(
                frame,
                r#"{{"type":"message","id":"{n}","data":{{"conversation_id":{chat},"content":"t:{sent_at_micros}:{sender}:{n}","client_message_id":"{sender}-{run}-{n}"}},"timestamp":{}}}"#,
                sent_at_micros / 1000
            ),
            Self::Centrifugo => write!(
                frame,
                r#"{{"id":{n},"publish":{{"channel":"chat:{chat}","data":{{"content":"t:{sent_at_micros}:{sender}:{n}","client_message_id":"{sender}-{run}-{n}"}}}}}}"#
            ),
        };
        frame
    }

    /// What an inbound text frame means for a connection of user `me`.
    pub fn classify(self, frame: &str, me: i64) -> Inbound {
        match self {
            Self::Switchboard => {
                // The server writes `type` first (protocol's encoder
                // guarantees it), so the kind is read off the frame's head.
                match json_kind(frame) {
                    Some(kinds::MESSAGE_NEW) => delivery(frame, me),
                    Some(kinds::MESSAGE_ACK) => Inbound::Ack { n: reference(frame) },
                    Some(kinds::ERROR) => Inbound::Error,
                    _ => Inbound::Other,
                }
            }
            Self::SocketIo => {
                if frame.starts_with(r#"42["message.new""#) {
                    delivery(frame, me)
                } else if let Some(ack) = frame.strip_prefix("43") {
                    if frame.contains(r#""error""#) {
                        Inbound::Error
                    } else {
                        // `43<n>[…]`: the ack id is the send's number.
                        let digits = ack.find(|c: char| !c.is_ascii_digit()).map_or(ack, |end| &ack[..end]);
                        Inbound::Ack { n: digits.parse().ok() }
                    }
                } else if frame == "2" {
                    Inbound::Reply("3")
                } else if frame.starts_with("44") {
                    Inbound::Error
                } else {
                    Inbound::Other
                }
            }
            Self::Ceiling => {
                if frame == "a" {
                    Inbound::Ack { n: None }
                } else {
                    delivery(frame, me)
                }
            }
            // Dialect frames are written `type` first too.
            Self::Dating => match json_kind(frame) {
                Some(dating::NEW_MESSAGE) => delivery(frame, me),
                Some(dating::MESSAGE_ACK) => Inbound::Ack { n: stamp(frame).map(|stamp| stamp.n) },
                Some(dating::ERROR) => Inbound::Error,
                _ => Inbound::Other,
            },
            // One message of a frame (see [`Dialect::messages`]).
            Self::Centrifugo => {
                if frame.starts_with(r#"{"push":{"channel":"#) {
                    if frame.contains(r#","pub":{"#) { delivery(frame, me) } else { Inbound::Other }
                } else if let Some(reply) = frame.strip_prefix(r#"{"id":"#) {
                    let digits = reply.find(|c: char| !c.is_ascii_digit()).map_or(reply, |end| &reply[..end]);
                    let rest = &reply[digits.len()..];
                    if rest.starts_with(r#","error":"#) {
                        Inbound::Error
                    } else if rest.starts_with(r#","publish":"#) {
                        Inbound::Ack { n: digits.parse().ok() }
                    } else {
                        Inbound::Other
                    }
                } else if frame == "{}" {
                    // The server's ping: a pong is owed.
                    Inbound::Reply("{}")
                } else {
                    Inbound::Other
                }
            }
        }
    }
}

/// The payload every send carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    micros: u64,
    sender: i64,
    n: u64,
}

/// Reads the `t:<micros>:<sender>:<n>` stamp out of a frame.
fn stamp(frame: &str) -> Option<Stamp> {
    const MARK: &str = "\"t:";
    let rest = &frame[frame.find(MARK)? + MARK.len()..];
    let mut parts = rest[..rest.find('"')?].splitn(3, ':');
    let (micros, sender, n) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Stamp { micros: micros.parse().ok()?, sender: sender.parse().ok()?, n: n.parse().ok()? })
}

/// A message frame, as seen by a connection of user `me`.
fn delivery(frame: &str, me: i64) -> Inbound {
    match stamp(frame) {
        None => Inbound::Other,
        Some(stamp) if stamp.sender == me => Inbound::Echo,
        Some(Stamp { micros, sender, n }) => Inbound::Delivery { sent_at_micros: micros, sender, n },
    }
}

/// The `"ref":"<n>"` of a Switchboard reply: the id of the frame it answers.
fn reference(frame: &str) -> Option<u64> {
    const MARK: &str = "\"ref\":\"";
    let rest = &frame[frame.find(MARK)? + MARK.len()..];
    rest[..rest.find('"')?].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{Dialect, Inbound};

    #[test]
    fn switchboard_frames() {
        let d = Dialect::Switchboard;
        let sent = d.send_frame(7, 3, 9, 1, 42);
        let parsed: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!((parsed["id"].as_str(), parsed["data"]["content"].as_str()), (Some("1"), Some("t:42:3:1")));
        let new = r#"{"type":"message.new","data":{"id":1,"content":"t:42:3:1","sender_id":3}}"#;
        assert_eq!(d.classify(new, 3), Inbound::Echo);
        assert_eq!(d.classify(new, 4), Inbound::Delivery { sent_at_micros: 42, sender: 3, n: 1 });
        let ack = r#"{"type":"message.ack","ref":"17","data":{"message":{"content":"t:42:3:1"}}}"#;
        assert_eq!(d.classify(ack, 3), Inbound::Ack { n: Some(17) });
        assert_eq!(d.classify(r#"{"type":"message.ack","ref":"x"}"#, 3), Inbound::Ack { n: None });
        assert_eq!(d.classify(r#"{"type":"error","data":{}}"#, 3), Inbound::Error);
        assert!(d.handshake_done(None, r#"{"type":"connect","data":{}}"#));
    }

    #[test]
    fn socketio_frames() {
        let d = Dialect::SocketIo;
        assert_eq!(
            d.send_frame(7, 3, 9, 12, 42),
            r#"4212["message.send",{"chat_id":7,"content":"t:42:3:12","client_message_id":"3-9-12"}]"#
        );
        assert_eq!(
            d.classify(r#"42["message.new",{"content":"t:42:3:12"}]"#, 4),
            Inbound::Delivery { sent_at_micros: 42, sender: 3, n: 12 }
        );
        assert_eq!(d.classify(r#"4312[{"id":1,"seq":1}]"#, 3), Inbound::Ack { n: Some(12) });
        assert_eq!(d.classify(r#"4312[{"error":"not a member"}]"#, 3), Inbound::Error);
        assert_eq!(d.classify("2", 3), Inbound::Reply("3"));
        assert!(d.handshake_done(None, r#"0{"sid":"x","pingInterval":25000}"#));
        assert!(d.handshake_done(Some(0), r#"40{"sid":"y"}"#));
        assert!(d.handshake_done(Some(1), r#"430[{"ok":true}]"#));
        assert!(!d.handshake_done(Some(1), r#"430[{"error":"bad chat"}]"#));
    }

    #[test]
    fn dating_frames() {
        let d = Dialect::Dating;
        let sent: serde_json::Value = serde_json::from_str(&d.send_frame(7, 3, 9, 1, 42_000)).unwrap();
        assert_eq!((sent["type"].as_str(), sent["data"]["conversation_id"].as_i64()), (Some("message"), Some(7)));
        assert_eq!(sent["data"]["content"], "t:42000:3:1");
        let new = r#"{"type":"new_message","data":{"message_id":1,"content":"t:42:3:5","sender_id":3},"timestamp":1}"#;
        assert_eq!(d.classify(new, 4), Inbound::Delivery { sent_at_micros: 42, sender: 3, n: 5 });
        assert_eq!(d.classify(new, 3), Inbound::Echo);
        let ack = r#"{"type":"message_ack","data":{"content":"t:42:3:5"}}"#;
        assert_eq!(d.classify(ack, 3), Inbound::Ack { n: Some(5) });
        assert_eq!(d.classify(r#"{"type":"error","data":{"code":40001}}"#, 3), Inbound::Error);
        assert!(d.handshake_done(None, r#"{"type":"auth_success","data":{"user_id":3}}"#));
        assert_eq!(d.ws_url("http://h:1", "tok", 7), "ws://h:1/v1?token=tok");
    }

    #[test]
    fn centrifugo_frames() {
        let d = Dialect::Centrifugo;
        let sent: serde_json::Value = serde_json::from_str(&d.send_frame(7, 3, 9, 12, 42)).unwrap();
        assert_eq!((sent["id"].as_u64(), sent["publish"]["channel"].as_str()), (Some(12), Some("chat:7")));
        assert_eq!(sent["publish"]["data"]["content"], "t:42:3:12");
        for frame in d.handshake("tok", 7) {
            serde_json::from_str::<serde_json::Value>(&frame).unwrap();
        }
        assert!(d.handshake_done(Some(0), r#"{"id":4000000000,"connect":{"client":"c","version":"6","ping":25}}"#));
        assert!(!d.handshake_done(Some(0), r#"{"id":4000000000,"error":{"code":109,"message":"token expired"}}"#));
        assert!(d.handshake_done(Some(1), "{}\n{\"id\":4000000001,\"subscribe\":{\"recoverable\":true}}"));
        assert!(!d.handshake_done(Some(1), r#"{"id":4000000001,"error":{"code":103,"message":"permission denied"}}"#));
        assert_eq!(d.ws_url("http://h:1", "tok", 7), "ws://h:1/connection/websocket");
        let batch = "{\"id\":12,\"publish\":{}}\n{\"push\":{\"channel\":\"chat:7\",\"pub\":{\"data\":{\"content\":\"t:42:3:5\"},\"offset\":9}}}\n{}";
        let messages: Vec<Inbound> = d.messages(batch).map(|message| d.classify(message, 4)).collect();
        assert_eq!(
            messages,
            [
                Inbound::Ack { n: Some(12) },
                Inbound::Delivery { sent_at_micros: 42, sender: 3, n: 5 },
                Inbound::Reply("{}")
            ]
        );
        let own = r#"{"push":{"channel":"chat:7","pub":{"data":{"content":"t:42:3:5"}}}}"#;
        assert_eq!(d.classify(own, 3), Inbound::Echo);
        assert_eq!(d.classify(r#"{"id":13,"error":{"code":103,"message":"permission denied"}}"#, 3), Inbound::Error);
        let join = r#"{"push":{"channel":"chat:7","join":{"info":{"user":"3"}}}}"#;
        assert_eq!(d.classify(join, 4), Inbound::Other);
    }

    #[test]
    fn ceiling_and_malformed_frames() {
        let d = Dialect::Ceiling;
        assert_eq!(d.classify("a", 1), Inbound::Ack { n: None });
        assert_eq!(d.classify(r#"{"content":"t:5:2:3"}"#, 1), Inbound::Delivery { sent_at_micros: 5, sender: 2, n: 3 });
        let junk =
            ["", "{", r#"{"content":"t:x:2:1"}"#, r#"{"content":"t:5:2"}"#, r#""t:5:2:1"#, r#"{"content":"t:5:2:-1"}"#];
        for junk in junk {
            assert_eq!(d.classify(junk, 1), Inbound::Other, "{junk}");
        }
    }
}
