//! The seed dialects: each seed app's own WebSocket frame names and
//! shapes, and its error-code table, mapped from the canonical contract in
//! one place per dialect. A dialect adds no command and no event of its
//! own: its client frames decode into [`ClientCommand`]s and the server's
//! canonical events are re-shaped for it, so one message log and one set
//! of rules serve every seed's clients.
//!
//! [`ClientCommand`]: crate::ClientCommand

pub mod dating;
pub mod simple;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client::{ClientFrame, FrameError};
use crate::time::Millis;

/// A seed contract served beside the canonical one (seed 002).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Seed 000, the dating app: REST under `/v1`, WebSocket at `/v1?token=`.
    Dating,
    /// Seed 001, the simple chat: REST under `/api/v1`, WebSocket at `/api/v1/ws`.
    Simple,
    /// Seed 003, SmellPin: REST under `/api/v1` beside seed 001 (the paths
    /// do not collide); it has no WebSocket of its own.
    SmellPin,
    /// Seed 004, the couple app: REST under `/api` beside seed 002, whose
    /// WebSocket (`/ws`) its clients use.
    Couple,
}

impl Dialect {
    /// Every dialect, in seed order.
    pub const ALL: [Self; 4] = [Self::Dating, Self::Simple, Self::SmellPin, Self::Couple];

    /// The seed number that names the dialect on the command line (`000`).
    pub fn seed(self) -> &'static str {
        match self {
            Self::Dating => "000",
            Self::Simple => "001",
            Self::SmellPin => "003",
            Self::Couple => "004",
        }
    }

    /// The dialect of seed `seed` (`000` or `0`, `001` or `1`, ...).
    pub fn from_seed(seed: &str) -> Option<Self> {
        match seed.trim().trim_start_matches('0') {
            "" => Some(Self::Dating),
            "1" => Some(Self::Simple),
            "3" => Some(Self::SmellPin),
            "4" => Some(Self::Couple),
            _ => None,
        }
    }

    /// Where the dialect's own WebSocket is served, if it has one.
    pub fn socket_path(self) -> Option<&'static str> {
        match self {
            Self::Dating => Some("/v1"),
            Self::Simple => Some("/api/v1/ws"),
            Self::SmellPin | Self::Couple => None,
        }
    }

    /// A short name (metrics labels, logs).
    pub fn name(self) -> &'static str {
        match self {
            Self::Dating => "dating",
            Self::Simple => "simple",
            Self::SmellPin => "smellpin",
            Self::Couple => "couple",
        }
    }

    /// The dialect's place in [`Dialect::ALL`] (per-dialect caches index by it).
    pub fn index(self) -> usize {
        match self {
            Self::Dating => 0,
            Self::Simple => 1,
            Self::SmellPin => 2,
            Self::Couple => 3,
        }
    }

    /// Decodes a client frame of this dialect (JSON text) into its command.
    pub fn decode(self, bytes: &[u8]) -> Result<ClientFrame, FrameError> {
        match self {
            Self::Dating => dating::decode(bytes),
            Self::Simple => simple::decode(bytes),
            Self::SmellPin | Self::Couple => {
                let _ = bytes;
                Err(FrameError::Malformed(format!("seed {} has no WebSocket frames", self.seed())))
            }
        }
    }

    /// A canonical event (`kind` and its `data`, as the canonical JSON
    /// frame carries them) in this dialect's frame, replying to
    /// `reference` if any; `None` when the dialect has no frame for it.
    pub fn encode(
        self,
        kind: &str,
        data: &serde_json::Value,
        reference: Option<&str>,
        audience: Audience,
        at: Millis,
    ) -> Option<Bytes> {
        let frame = match self {
            Self::Dating => dating::encode(kind, data, reference, at)?,
            Self::Simple => simple::encode(kind, data, reference, audience, at)?,
            // No socket of their own: nothing is ever encoded for them.
            Self::SmellPin | Self::Couple => return None,
        };
        match serde_json::to_vec(&frame) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(error) => {
                tracing::error!(%error, kind, dialect = self.name(), "dialect frame not encoded");
                None
            }
        }
    }
}

/// A dialect's frame as it is written: `type` first (so a client can
/// classify a frame by its head), then `ref`, then the rest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outgoing {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Outgoing {
    /// The frame as a JSON value (tests).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What a dialect may need to know of a delivery beyond its canonical
/// event: seed 001 names a private chat by the other person
/// (`receiver_id`), which a message alone does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Audience {
    /// The two members of the private chat the event is about.
    pub private_pair: Option<[i64; 2]>,
}

/// The `data` of a client frame, or `{}` when it has none.
fn data_of(value: &mut serde_json::Value) -> serde_json::Value {
    value.get_mut("data").map_or_else(|| serde_json::json!({}), serde_json::Value::take)
}

/// A frame's `type` and optional `id`, read before its data.
fn header(bytes: &[u8]) -> Result<(serde_json::Value, String, Option<String>), FrameError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| FrameError::Malformed(error.to_string()))?;
    let kind = value
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| FrameError::Malformed("a frame needs a string \"type\"".into()))?
        .to_owned();
    let id = value.get("id").and_then(|id| match id {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    });
    Ok((value, kind, id))
}

/// Decodes `data` as `T`, or says which command's data was wrong.
fn typed<T: serde::de::DeserializeOwned>(
    data: serde_json::Value,
    id: Option<&String>,
    kind: &'static str,
) -> Result<T, FrameError> {
    serde_json::from_value(data).map_err(|error| FrameError::Invalid {
        id: id.cloned(),
        kind,
        detail: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::Dialect;

    #[test]
    fn dialects_by_seed() {
        assert_eq!(Dialect::from_seed("000"), Some(Dialect::Dating));
        assert_eq!(Dialect::from_seed("0"), Some(Dialect::Dating));
        assert_eq!(Dialect::from_seed("001"), Some(Dialect::Simple));
        assert_eq!(Dialect::from_seed("003"), Some(Dialect::SmellPin));
        assert_eq!(Dialect::from_seed("4"), Some(Dialect::Couple));
        assert_eq!(Dialect::from_seed("002"), None, "the canonical contract is not a dialect");
        assert_eq!(Dialect::from_seed("x"), None);
        for dialect in Dialect::ALL {
            assert_eq!(Dialect::from_seed(dialect.seed()), Some(dialect));
        }
    }
}
