//! Times on the wire: ISO 8601 UTC strings with millisecond precision in
//! REST bodies and event data (seed 002), milliseconds since the Unix epoch
//! inside the engine.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, the engine's internal time unit.
pub type Millis = i64;

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

/// Formats milliseconds since the epoch as `2024-12-19T10:30:00.000Z`.
pub fn to_iso(millis: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO 8601 / RFC 3339 string into milliseconds since the epoch.
pub fn from_iso(text: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::{from_iso, to_iso};

    #[test]
    fn iso_round_trip() {
        let text = "2024-12-19T10:30:00.000Z";
        let millis = from_iso(text).unwrap();
        assert_eq!(to_iso(millis), text);
        assert_eq!(from_iso("2024-12-19T10:30:00Z"), Some(millis));
        assert_eq!(from_iso("2024-12-19T18:30:00+08:00"), Some(millis));
        assert_eq!(from_iso("yesterday"), None);
    }
}
