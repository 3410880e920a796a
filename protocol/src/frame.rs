//! Frames on the wire: the envelope as JSON text (the default) or
//! MessagePack binary (subprotocol `switchboard.msgpack`), the same fields
//! both ways, and [`Frame`], a server event encoded at most once per wire
//! format and shared by every recipient.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Serialize;

use crate::compact::Pruned;
use crate::dialect::{Audience, Dialect};
use crate::server::{Data, MessageAck, ServerEvent};
use crate::time::{Millis, now_millis, to_iso};

/// The subprotocol a client offers to speak MessagePack.
pub const MSGPACK_PROTOCOL: &str = "switchboard.msgpack";
/// The explicit name of the default JSON encoding.
pub const JSON_PROTOCOL: &str = "switchboard.json";

/// How a connection encodes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Text frames of JSON.
    Json,
    /// Binary frames of MessagePack (maps with field names).
    MsgPack,
    /// Text frames of JSON without the members at their default
    /// (`/ws?compact=1`, see [`crate::compact`]).
    CompactJson,
    /// Text frames of a seed dialect's JSON (its own names and shapes).
    Dialect(Dialect),
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

/// The envelope as it is serialised: `type` first, then `ref` (replies
/// only), `data` and `timestamp`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    data: Data<'a>,
    timestamp: String,
}

/// The `type` of a JSON frame this server encoded, read without parsing
/// the frame: [`encode`] always writes `type` first, so a client that
/// needs only the kind (the load generator) looks at the frame's head.
pub fn json_kind(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix(r#"{"type":""#)?;
    rest.find('"').map(|end| &rest[..end])
}

/// Encodes `event` (a reply to command `reference`, if any) stamped `at`.
/// Serialising these types cannot fail; an empty frame would only mean a
/// bug, and is logged.
pub fn encode(event: &ServerEvent, reference: Option<&str>, at: Millis, encoding: Encoding) -> Bytes {
    if let Encoding::Dialect(dialect) = encoding {
        // Empty when the dialect has no frame for the event.
        return serde_json::to_value(Data(event))
            .ok()
            .and_then(|data| dialect.encode(event.kind(), &data, reference, Audience::default(), at))
            .unwrap_or_default();
    }
    let envelope = Envelope { kind: event.kind(), reference, data: Data(event), timestamp: to_iso(at) };
    let encoded = match encoding {
        Encoding::Json => serde_json::to_vec(&envelope).map_err(|error| error.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(&envelope).map_err(|error| error.to_string()),
        Encoding::CompactJson => serde_json::to_vec(&Pruned(&envelope)).map_err(|error| error.to_string()),
        Encoding::Dialect(_) => unreachable!("answered above"),
    };
    match encoded {
        Ok(bytes) => Bytes::from(bytes),
        Err(error) => {
            tracing::error!(%error, kind = event.kind(), "event not encoded");
            Bytes::new()
        }
    }
}

/// [`encode`] of a reply that may be a `message.ack` whose view is the
/// data of `announced`, the message's `message.new` frame: in JSON text
/// (full or compact) the ack then takes the view's bytes from that frame,
/// encoded once for the message's recipients, instead of serialising the
/// view a second time. The bytes are those [`encode`] would write.
pub fn encode_reply(
    event: &ServerEvent,
    announced: Option<&Frame>,
    reference: Option<&str>,
    at: Millis,
    encoding: Encoding,
) -> Bytes {
    if let (ServerEvent::MessageAck(ack), Some(announced)) = (event, announced)
        && let Some(spliced) = spliced_ack(ack, announced, reference, at, encoding)
    {
        return spliced;
    }
    encode(event, reference, at, encoding)
}

/// The ack of [`encode_reply`] around the view's bytes in `announced`;
/// `None` when `announced` does not carry this very view or the encoding
/// is not JSON text.
fn spliced_ack(
    ack: &MessageAck,
    announced: &Frame,
    reference: Option<&str>,
    at: Millis,
    encoding: Encoding,
) -> Option<Bytes> {
    let compact = match encoding {
        Encoding::Json => false,
        Encoding::CompactJson => true,
        Encoding::MsgPack | Encoding::Dialect(_) => return None,
    };
    match announced.event() {
        Some(ServerEvent::MessageNew(view)) if Arc::ptr_eq(view, &ack.message) => {}
        _ => return None,
    }
    let frame = announced.bytes(encoding);
    // `encode` writes `type`, then `data`, then `timestamp`, whose value
    // (a plain ISO string) is the frame's last: what lies between is the view.
    let after_kind = frame.strip_prefix(br#"{"type":"message.new","data":"#)?;
    let timestamp = after_kind.windows(TIMESTAMP.len()).rposition(|window| window == TIMESTAMP)?;
    let view = &after_kind[..timestamp];
    // The members `Pruned` leaves out are those at their default: a
    // `None` id and `duplicate: false`; `ref` is written whenever given.
    let mut out = Vec::with_capacity(view.len() + 160);
    out.extend_from_slice(br#"{"type":"message.ack","#);
    if let Some(reference) = reference {
        out.extend_from_slice(br#""ref":"#);
        serde_json::to_writer(&mut out, reference).ok()?;
        out.push(b',');
    }
    out.extend_from_slice(br#""data":{"#);
    match &ack.client_message_id {
        Some(id) => {
            out.extend_from_slice(br#""client_message_id":"#);
            serde_json::to_writer(&mut out, id).ok()?;
            out.push(b',');
        }
        None if !compact => out.extend_from_slice(br#""client_message_id":null,"#),
        None => {}
    }
    out.extend_from_slice(br#""message":"#);
    out.extend_from_slice(view);
    if ack.duplicate || !compact {
        out.extend_from_slice(if ack.duplicate { br#","duplicate":true"# } else { br#","duplicate":false"# });
    }
    out.extend_from_slice(br#"},"timestamp":"#);
    serde_json::to_writer(&mut out, &to_iso(at)).ok()?;
    out.push(b'}');
    Some(Bytes::from(out))
}

/// What precedes the timestamp in a JSON frame [`encode`] wrote.
const TIMESTAMP: &[u8] = br#","timestamp":"#;

/// A server event for many recipients: encoded lazily, at most once per
/// wire format, and shared by reference (`Bytes`) afterwards. A frame that
/// crossed nodes arrives with both encodings already made and no event:
/// it is written as it came, never decoded. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Frame {
    inner: Arc<FrameInner>,
}

#[derive(Debug)]
struct FrameInner {
    kind: &'static str,
    event: Option<ServerEvent>,
    at: Millis,
    /// What dialects need beyond the event (seed 001's `receiver_id`).
    audience: Audience,
    json: OnceLock<Bytes>,
    msgpack: OnceLock<Bytes>,
    /// Made from the event, or from the JSON frame when it came from
    /// another node.
    compact: OnceLock<Bytes>,
    /// One per dialect, made from the JSON frame on first need: a frame
    /// from another node is re-shaped on each node with such clients, an
    /// empty one means the dialect has no frame for the event.
    dialects: [OnceLock<Bytes>; Dialect::ALL.len()],
}

impl Frame {
    /// A frame of `event`, stamped now.
    pub fn new(event: ServerEvent) -> Self {
        Self::stamped(event, now_millis())
    }

    /// A frame of `event` stamped `at`.
    pub fn stamped(event: ServerEvent, at: Millis) -> Self {
        Self::stamped_for(event, at, Audience::default())
    }

    /// A frame of `event` stamped `at`, about a chat of `audience`.
    pub fn stamped_for(event: ServerEvent, at: Millis, audience: Audience) -> Self {
        let kind = event.kind();
        Self {
            inner: Arc::new(FrameInner {
                kind,
                event: Some(event),
                at,
                audience,
                json: OnceLock::new(),
                msgpack: OnceLock::new(),
                compact: OnceLock::new(),
                dialects: Default::default(),
            }),
        }
    }

    /// A frame encoded elsewhere (another node): `json` and `msgpack` are
    /// the same event in each format. `kind` is looked up among the known
    /// event names (for metrics labels); an unknown one reads `unknown`.
    pub fn encoded(kind: &str, at: Millis, json: Bytes, msgpack: Bytes, audience: Audience) -> Self {
        Self {
            inner: Arc::new(FrameInner {
                kind: crate::kinds::server_kind(kind).unwrap_or("unknown"),
                event: None,
                at,
                audience,
                json: OnceLock::from(json),
                msgpack: OnceLock::from(msgpack),
                compact: OnceLock::new(),
                dialects: Default::default(),
            }),
        }
    }

    /// What dialects need to know beyond the event.
    pub fn audience(&self) -> Audience {
        self.inner.audience
    }

    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        self.inner.kind
    }

    /// When the event was made.
    pub fn at(&self) -> Millis {
        self.inner.at
    }

    /// The event, when this frame was made on this node.
    pub fn event(&self) -> Option<&ServerEvent> {
        self.inner.event.as_ref()
    }

    /// The frame read back as a client would (tests and tools; the server
    /// itself never decodes a frame it sends).
    pub fn to_event(&self) -> Option<crate::Event> {
        serde_json::from_slice(&self.bytes(Encoding::Json)).ok()
    }

    /// The frame in `dialect`'s shape, from its canonical JSON (the one
    /// form every node has): empty when the dialect has no frame for it.
    fn reshape(&self, dialect: Dialect) -> Bytes {
        let json = self.bytes(Encoding::Json);
        let Ok(event) = serde_json::from_slice::<crate::Event>(&json) else {
            tracing::error!(kind = self.kind(), "a frame's JSON did not read back; not re-shaped");
            return Bytes::new();
        };
        dialect.encode(&event.kind, &event.data, None, self.inner.audience, self.inner.at).unwrap_or_default()
    }

    /// The compact form of a frame from another node, from its JSON: read
    /// as an [`crate::Event`], so that `type` stays first (a JSON value's
    /// members would come out in name order).
    fn compacted(&self) -> Bytes {
        let json = self.bytes(Encoding::Json);
        match serde_json::from_slice::<crate::Event>(&json).and_then(|event| serde_json::to_vec(&Pruned(&event))) {
            Ok(compact) => Bytes::from(compact),
            Err(error) => {
                tracing::error!(%error, kind = self.kind(), "a frame's JSON did not read back; not compacted");
                json
            }
        }
    }

    /// The frame in `encoding` (a cheap, reference-counted clone).
    pub fn bytes(&self, encoding: Encoding) -> Bytes {
        let inner = &*self.inner;
        let cell = match encoding {
            Encoding::Json => &inner.json,
            Encoding::MsgPack => &inner.msgpack,
            Encoding::CompactJson if inner.event.is_none() => {
                return inner.compact.get_or_init(|| self.compacted()).clone();
            }
            Encoding::CompactJson => &inner.compact,
            Encoding::Dialect(dialect) => {
                return inner.dialects[dialect.index()].get_or_init(|| self.reshape(dialect)).clone();
            }
        };
        cell.get_or_init(|| match &inner.event {
            Some(event) => encode(event, None, inner.at, encoding),
            // `encoded` fills both cells: unreachable, but never a panic.
            None => Bytes::new(),
        })
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{Encoding, Frame, encode};
    use crate::Event;
    use crate::dialect::{Audience, Dialect};
    use crate::server::{CallRinging, ServerEvent};

    fn decode(bytes: &[u8], encoding: Encoding) -> Event {
        match encoding {
            Encoding::Json => serde_json::from_slice(bytes).unwrap(),
            Encoding::MsgPack => rmp_serde::from_slice(bytes).unwrap(),
            Encoding::CompactJson | Encoding::Dialect(_) => unreachable!("full canonical encodings only"),
        }
    }

    #[test]
    fn both_encodings_carry_one_envelope() {
        let event = ServerEvent::CallRinging(CallRinging { call_id: "c1".into() });
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let reply = decode(&encode(&event, Some("7"), 0, encoding), encoding);
            assert_eq!(reply.kind, "call.ringing");
            assert_eq!(reply.reference.as_deref(), Some("7"));
            assert_eq!(reply.data["call_id"], "c1");
            assert_eq!(reply.timestamp, "1970-01-01T00:00:00.000Z");
            let pushed = decode(&Frame::stamped(event.clone(), 0).bytes(encoding), encoding);
            assert_eq!(pushed.reference, None, "a shared frame answers nobody");
        }
        let json = encode(&event, None, 0, Encoding::Json);
        assert!(json.starts_with(br#"{"type":"call.ringing","data":"#), "type first: {json:?}");
        assert_eq!(super::json_kind(std::str::from_utf8(&json).unwrap()), Some("call.ringing"));
        assert_eq!(super::json_kind(r#"{"data":{},"type":"x"}"#), None, "only this encoder's frames");
    }

    /// A message view whose content holds what could confuse a splice:
    /// the envelope's own member names, quotes, a line break.
    fn tricky_view(client_message_id: Option<&str>) -> std::sync::Arc<crate::views::MessageView> {
        let content = r#"he said "hi", then ,"timestamp":"x"} and
left"#;
        let view = serde_json::from_value(serde_json::json!({
            "id": 77, "chat_id": 9, "seq": 3, "sender_id": 2, "client_message_id": client_message_id,
            "content": content, "type": "text", "file_name": "", "file_size": 0, "file_url": "",
            "thumbnail": "", "is_read": false, "is_edited": false, "is_deleted": false, "is_pinned": false,
            "reply_to_id": null, "forward_from": null, "ttl": 0, "expires_at": null, "send_at": null,
            "is_silent": false, "created_at": "2026-12-07T01:00:00.000Z", "updated_at": "2026-12-07T01:00:00.000Z",
            "sender": {"id": 2, "username": "two", "nickname": "", "avatar": ""}, "reactions": [],
            "extra": {"timestamp": 1}
        }))
        .unwrap();
        std::sync::Arc::new(view)
    }

    #[test]
    fn an_ack_spliced_from_its_message_new_is_the_ack_encode_writes() {
        use crate::server::MessageAck;
        for id in [None, Some("c-1"), Some(""), Some("q\"uote")] {
            let view = tricky_view(id);
            let announced = Frame::stamped(ServerEvent::MessageNew(view.clone()), 5);
            for duplicate in [false, true] {
                let ack = MessageAck { client_message_id: id.map(str::to_owned), message: view.clone(), duplicate };
                let event = ServerEvent::MessageAck(Box::new(ack.clone()));
                for reference in [None, Some("17"), Some(""), Some("a\"b")] {
                    for encoding in [Encoding::Json, Encoding::CompactJson, Encoding::MsgPack] {
                        let whole = encode(&event, reference, 1_234, encoding);
                        let case = format!("{id:?} {duplicate} {reference:?} {encoding:?}");
                        match super::spliced_ack(&ack, &announced, reference, 1_234, encoding) {
                            Some(spliced) => assert_eq!(spliced, whole, "{case}"),
                            None => assert_eq!(encoding, Encoding::MsgPack, "JSON text is spliced: {case}"),
                        }
                        let reply = super::encode_reply(&event, Some(&announced), reference, 1_234, encoding);
                        assert_eq!(reply, whole, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_ack_is_spliced_only_from_the_frame_of_its_own_view() {
        use crate::server::MessageAck;
        let view = tricky_view(Some("c-1"));
        let ack = ServerEvent::MessageAck(Box::new(MessageAck {
            client_message_id: Some("c-1".into()),
            message: view.clone(),
            duplicate: false,
        }));
        let mut edited = (*view).clone();
        edited.content = "another text".into();
        let others = [
            Frame::stamped(ServerEvent::MessageNew(std::sync::Arc::new(edited)), 5),
            Frame::stamped(ServerEvent::CallRinging(CallRinging { call_id: "c".into() }), 5),
            // A frame that crossed nodes has no view to compare.
            Frame::encoded("message.new", 5, "{}".into(), Bytes::default(), Audience::default()),
        ];
        for other in &others {
            let reply = super::encode_reply(&ack, Some(other), Some("1"), 9, Encoding::Json);
            assert_eq!(reply, encode(&ack, Some("1"), 9, Encoding::Json), "{other:?}");
        }
        let read: serde_json::Value =
            serde_json::from_slice(&super::encode_reply(&ack, Some(&others[0]), None, 9, Encoding::Json)).unwrap();
        assert_eq!(read["data"]["message"]["content"], view.content, "the ack's own view, not the other frame's");
    }

    #[test]
    fn a_frame_from_another_node_is_written_as_it_came() {
        let frame = Frame::encoded("message.new", 5, "{\"a\":1}".into(), vec![0x80].into(), Audience::default());
        assert_eq!((frame.kind(), frame.at()), ("message.new", 5));
        assert_eq!(&frame.bytes(Encoding::Json)[..], b"{\"a\":1}");
        assert_eq!(&frame.bytes(Encoding::MsgPack)[..], &[0x80]);
        assert!(frame.event().is_none());
        assert_eq!(Frame::encoded("no.such", 0, "{}".into(), "".into(), Audience::default()).kind(), "unknown");
    }

    #[test]
    fn a_frame_is_reshaped_once_per_dialect_even_after_crossing_nodes() {
        let event = ServerEvent::Typing(crate::server::TypingState {
            chat_id: 9,
            user_id: 2,
            is_typing: true,
            timestamp: "t".into(),
        });
        let local = Frame::stamped(event, 42);
        let remote = Frame::encoded("typing", 42, local.bytes(Encoding::Json), Bytes::default(), Audience::default());
        for frame in [&local, &remote] {
            let dating: serde_json::Value =
                serde_json::from_slice(&frame.bytes(Encoding::Dialect(Dialect::Dating))).unwrap();
            assert_eq!((dating["type"].as_str(), dating["timestamp"].as_i64()), (Some("user_typing"), Some(42)));
            assert_eq!(dating["data"]["conversation_id"], 9);
            let simple: serde_json::Value =
                serde_json::from_slice(&frame.bytes(Encoding::Dialect(Dialect::Simple))).unwrap();
            assert_eq!(simple["data"]["chat_id"], "9");
        }
        let calls = Frame::stamped(ServerEvent::CallRinging(CallRinging { call_id: "c".into() }), 0);
        assert!(calls.bytes(Encoding::Dialect(Dialect::Dating)).is_empty(), "no dating frame for calls");
    }

    #[test]
    fn a_frame_from_another_node_is_compacted_like_a_local_one() {
        let event = ServerEvent::Typing(crate::server::TypingState {
            chat_id: 9,
            user_id: 2,
            is_typing: false,
            timestamp: String::new(),
        });
        let local = Frame::stamped(event, 42);
        let remote = Frame::encoded("typing", 42, local.bytes(Encoding::Json), Bytes::default(), Audience::default());
        for frame in [&local, &remote] {
            let compact = frame.bytes(Encoding::CompactJson);
            assert!(compact.starts_with(br#"{"type":"typing","data":{"#), "type first: {compact:?}");
            let read: serde_json::Value = serde_json::from_slice(&compact).unwrap();
            assert_eq!(read["data"], serde_json::json!({"chat_id": 9, "user_id": 2}));
            assert_eq!(read["timestamp"], "1970-01-01T00:00:00.042Z");
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
