//! Times as sshbreak shows them: UTC, ISO 8601 (`2026-12-04T16:00:00Z`), `forever` for the end of
//! time. One place, so the key id, the audit log, `inspect` and error messages all agree.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The value OpenSSH uses for "no end" (`forever`).
pub const FOREVER: u64 = u64::MAX;

/// `2026-12-04T16:00:00Z`; `forever` for [`FOREVER`]; `@SECS` for a time past the year 9999.
pub fn iso(secs: u64) -> String {
    if secs == FOREVER {
        return "forever".into();
    }
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

/// `20261204T160000Z`, for file names and key ids.
pub fn compact(secs: u64) -> String {
    iso(secs).replace(['-', ':'], "")
}

/// `2026-12-04`.
pub fn date(secs: u64) -> String {
    let full = iso(secs);
    match full.split_once('T') {
        Some((day, _)) => day.to_string(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Friday 2026-12-04 16:00:00 UTC.
    const NOW: u64 = 1_796_400_000;

    #[test]
    fn one_format_everywhere() {
        assert_eq!(iso(NOW), "2026-12-04T16:00:00Z");
        assert_eq!(compact(NOW), "20261204T160000Z");
        assert_eq!(date(NOW), "2026-12-04");
        assert_eq!(iso(FOREVER), "forever");
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(300_000_000_000), "@300000000000");
    }
}
