//! Timestamps as stored in the database: RFC 3339, UTC, millisecond precision, always the same width
//! (`2026-11-25T12:00:00.123Z`), so that text order is time order.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// The current time, in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Format a time the way the database stores it.
pub fn format(t: OffsetDateTime) -> String {
    let utc = t.to_offset(UtcOffset::UTC);
    // The format has no fallible component for years 0..=9999; fall back to RFC 3339 just in case.
    utc.format(FORMAT).unwrap_or_else(|_| {
        utc.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    })
}

/// Parse a stored timestamp.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(s, FORMAT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = time::macros::datetime!(2026-11-25 09:05:01.5 UTC);
        let b = time::macros::datetime!(2026-11-25 10:00:00 UTC);
        assert_eq!(format(a), "2026-11-25T09:05:01.500Z");
        assert_eq!(parse(&format(a)), Some(a));
        assert!(format(a) < format(b));
        let offset = time::macros::datetime!(2026-11-25 12:00:00 +02:00);
        assert_eq!(format(offset), "2026-11-25T10:00:00.000Z");
        assert_eq!(parse("nonsense"), None);
    }
}
