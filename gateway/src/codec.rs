//! WebSocket messages from and to protocol's frames: the codecs
//! themselves are `protocol`'s; this is where their bytes become text or
//! binary WebSocket messages. A frame's kind says its encoding: text is
//! JSON, binary is MessagePack.

use bytes::Bytes;
use protocol::client::{ClientFrame, FrameError, decode as decode_frame};
use protocol::{Encoding, Frame, ServerEvent};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Decodes a client frame, straight from its bytes into the typed command.
pub fn decode(message: &Message) -> Result<ClientFrame, FrameError> {
    decode_as(message, Encoding::Json)
}

/// Decodes a client frame of a connection speaking `encoding` (a dialect's
/// connection reads its text frames as that dialect's).
pub fn decode_as(message: &Message, encoding: Encoding) -> Result<ClientFrame, FrameError> {
    match message {
        Message::Text(text) if matches!(encoding, Encoding::Dialect(_)) => decode_frame(text.as_bytes(), encoding),
        Message::Text(text) => decode_frame(text.as_bytes(), Encoding::Json),
        Message::Binary(bytes) => decode_frame(bytes, Encoding::MsgPack),
        _ => Err(FrameError::Malformed(format!(
            "binary frames need the {} subprotocol; text frames are JSON",
            protocol::frame::MSGPACK_PROTOCOL
        ))),
    }
}

/// The WebSocket message carrying encoded `bytes`; `None` for a dialect
/// with no frame for the event (empty bytes). A JSON message never holds a
/// line break, so that [`pack`] can put one per line without looking.
fn message(bytes: Bytes, encoding: Encoding) -> Option<Message> {
    if bytes.is_empty() && matches!(encoding, Encoding::Dialect(_)) {
        return None;
    }
    Some(match encoding {
        Encoding::MsgPack => Message::Binary(bytes),
        // JSON from serde_json (or from another node's serde_json) is UTF-8;
        // the check runs once per frame, not once per recipient.
        Encoding::Json | Encoding::CompactJson | Encoding::Dialect(_) => {
            match Utf8Bytes::try_from(on_one_line(bytes)) {
                Ok(text) => Message::Text(text),
                Err(error) => {
                    tracing::error!(%error, "a JSON frame was not UTF-8; dropped");
                    Message::Text(Utf8Bytes::from_static("{}"))
                }
            }
        }
    })
}

/// JSON `bytes` without line breaks. Compact `serde_json` never writes one
/// (a line break inside a string is escaped), so this is a scan that finds
/// nothing; any other JSON can only hold one as whitespace between tokens,
/// which a space replaces without changing what it says.
fn on_one_line(bytes: Bytes) -> Bytes {
    if !bytes.contains(&b'\n') {
        return bytes;
    }
    bytes.iter().map(|&byte| if byte == b'\n' { b' ' } else { byte }).collect::<Vec<u8>>().into()
}

/// `event` as a reply to the command `reference`, for one connection
/// (`None`: the connection's dialect has no frame for it).
pub fn encode(event: &ServerEvent, reference: Option<&str>, encoding: Encoding) -> Option<Message> {
    message(protocol::frame::encode(event, reference, protocol::time::now_millis(), encoding), encoding)
}

/// A command's reply in `encoding`, stamped now (an ack reuses the bytes of
/// its message's `message.new`); `None` as for [`encode`].
pub(crate) fn encode_reply(reply: &crate::commands::Reply, encoding: Encoding) -> Option<Message> {
    let (event, reference, at) = (&reply.event, reply.reference.as_deref(), protocol::time::now_millis());
    message(protocol::frame::encode_reply(event, reply.announced.as_ref(), reference, at, encoding), encoding)
}

/// Frames that leave together, packed for a connection that asked for it
/// (`/ws?batch=1`): each run of text frames becomes one frame, a line per
/// frame (JSON frames hold no line breaks of their own), and each run of
/// binary frames one frame, back to back (MessagePack values delimit
/// themselves). Text frames are [`message`]'s, which hold no line break:
/// this runs for every frame to every recipient, and does not look again.
pub(crate) fn pack(frames: Vec<Message>) -> Vec<Message> {
    #[derive(PartialEq)]
    enum Run {
        Text,
        Binary,
    }
    let run_of = |frame: &Message| match frame {
        Message::Text(_) => Some(Run::Text),
        Message::Binary(_) => Some(Run::Binary),
        _ => None,
    };
    let mut packed = Vec::with_capacity(1);
    let mut run: Vec<Message> = Vec::new();
    for frame in frames {
        let kind = run_of(&frame);
        if kind.is_none() || run.first().and_then(run_of) != kind {
            packed.extend(join(std::mem::take(&mut run)));
        }
        if kind.is_some() {
            run.push(frame);
        } else {
            packed.push(frame);
        }
    }
    packed.extend(join(run));
    packed
}

/// One frame of a run of text frames (a line each) or of binary frames.
fn join(mut run: Vec<Message>) -> Option<Message> {
    if run.len() < 2 {
        return run.pop();
    }
    if let Some(Message::Binary(_)) = run.first() {
        let mut bytes = Vec::with_capacity(run.iter().map(Message::len).sum());
        for frame in &run {
            if let Message::Binary(value) = frame {
                bytes.extend_from_slice(value);
            }
        }
        return Some(Message::Binary(bytes.into()));
    }
    let mut text = String::with_capacity(run.iter().map(|frame| frame.len() + 1).sum());
    for frame in &run {
        if let Message::Text(line) = frame {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(line.as_str());
        }
    }
    Some(Message::Text(text.into()))
}

/// A shared frame's WebSocket messages, made at most once per encoding for
/// one delivery and cloned (by reference) for each recipient.
#[derive(Debug)]
pub(crate) struct SharedMessages {
    frame: Frame,
    /// When its run was queued on its connections.
    queued_at: std::time::Instant,
    json: std::sync::OnceLock<Message>,
    msgpack: std::sync::OnceLock<Message>,
    compact: std::sync::OnceLock<Message>,
    dialects: [std::sync::OnceLock<Option<Message>>; protocol::dialect::Dialect::ALL.len()],
}

impl SharedMessages {
    /// A frame of a run queued at `queued_at`.
    pub(crate) fn queued(frame: Frame, queued_at: std::time::Instant) -> Self {
        Self {
            frame,
            queued_at,
            json: std::sync::OnceLock::new(),
            msgpack: std::sync::OnceLock::new(),
            compact: std::sync::OnceLock::new(),
            dialects: Default::default(),
        }
    }

    /// When its run was queued on its connections.
    pub(crate) fn queued_at(&self) -> std::time::Instant {
        self.queued_at
    }

    /// The frame's message in `encoding`; `None` when that dialect has no
    /// frame for the event.
    pub(crate) fn get(&self, encoding: Encoding) -> Option<Message> {
        let cell = match encoding {
            Encoding::Json => &self.json,
            Encoding::MsgPack => &self.msgpack,
            Encoding::CompactJson => &self.compact,
            Encoding::Dialect(dialect) => {
                let cell = &self.dialects[dialect.index()];
                return cell.get_or_init(|| message(self.frame.bytes(encoding), encoding)).clone();
            }
        };
        let made = cell.get_or_init(|| {
            // Canonical encodings always have a frame.
            message(self.frame.bytes(encoding), encoding).unwrap_or_else(|| Message::Text(Utf8Bytes::from_static("{}")))
        });
        Some(made.clone())
    }
}

#[cfg(test)]
mod tests {
    use protocol::server::CallRinging;
    use protocol::{ClientCommand, Encoding, Event, Frame, ServerEvent};
    use tokio_tungstenite::tungstenite::Message;

    use super::{SharedMessages, decode, encode, message, pack};

    #[test]
    fn text_is_json_and_binary_is_msgpack() {
        let ping = decode(&Message::Text(r#"{"type":"ping","id":"1"}"#.into())).unwrap();
        assert_eq!((ping.id.as_deref(), ping.command), (Some("1"), ClientCommand::Ping));
        let packed = rmp_serde::to_vec_named(&serde_json::json!({"type": "ping"})).unwrap();
        assert_eq!(decode(&Message::Binary(packed.into())).unwrap().command, ClientCommand::Ping);
        assert!(decode(&Message::Ping(Vec::new().into())).is_err());

        let event = ServerEvent::CallRinging(CallRinging { call_id: "c".into() });
        let Some(Message::Text(text)) = encode(&event, Some("9"), Encoding::Json) else { panic!("JSON is text") };
        let reply: Event = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!((reply.kind.as_str(), reply.reference.as_deref()), ("call.ringing", Some("9")));
        let frame = Frame::new(event.clone());
        let shared = SharedMessages::queued(frame, std::time::Instant::now());
        assert!(matches!(shared.get(Encoding::MsgPack), Some(Message::Binary(_))));
        let dating = Encoding::Dialect(protocol::dialect::Dialect::Dating);
        assert_eq!(shared.get(dating), None, "seed 000 has no frame for calls");
        assert_eq!(encode(&event, None, dating), None);
        let Some(Message::Text(dating_pong)) =
            encode(&ServerEvent::Pong(protocol::server::Pong { timestamp: "t".into() }), None, dating)
        else {
            panic!("a dating pong is text")
        };
        assert!(dating_pong.as_str().starts_with(r#"{"type":"pong","timestamp":"#), "{dating_pong}");
        assert_eq!(shared.get(Encoding::Json), shared.get(Encoding::Json));
    }

    #[test]
    fn packed_json_frames_are_one_line_each() {
        let spread = bytes::Bytes::from_static(b"{\"type\":\"pong\",\n\"data\":{\"note\":\"a\\nb\"}}");
        let Some(Message::Text(flat)) = message(spread, Encoding::Json) else { panic!("JSON is text") };
        assert!(!flat.as_str().contains('\n'), "{flat}");
        let value: serde_json::Value = serde_json::from_str(flat.as_str()).unwrap();
        assert_eq!(value["data"]["note"], "a\nb", "a line break inside a string is kept, escaped");
        let second =
            encode(&ServerEvent::CallRinging(CallRinging { call_id: "c".into() }), None, Encoding::Json).unwrap();
        let packed = pack(vec![Message::Text(flat.clone()), second.clone()]);
        let [Message::Text(both)] = packed.as_slice() else { panic!("one text frame: {packed:?}") };
        let lines: Vec<&str> = both.as_str().split('\n').collect();
        assert_eq!(lines, [flat.as_str(), second.to_text().unwrap()]);
    }
}
