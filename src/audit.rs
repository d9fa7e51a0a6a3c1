//! The issuance audit log: one JSON object per certificate, one line each, appended to
//! `<home>/audit.log` (0600). Every line carries the SHA-256 of the line before it (`prev`), so an
//! edited, inserted or deleted line breaks the chain and `sshbreak audit --verify` says where. (A
//! chain cannot show that the *last* lines were cut off; copy the log off the machine for that.)
//!
//! The log also remembers the signature counter each CA credential reported: a counter that does
//! not increase means a cloned key or a replayed signature, and is reported loudly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fsx;

pub const AUDIT_FILE: &str = "audit.log";
/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn audit_path(home: &Path) -> PathBuf {
    home.join(AUDIT_FILE)
}

/// One issued certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// When it was issued, UTC ISO 8601.
    pub time: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: String,
    pub valid_before: String,
    pub ca_fingerprint: String,
    pub ca_name: String,
    pub cert_key_fingerprint: String,
    /// authenticator-data flags byte of the CA signature.
    pub flags: u8,
    pub counter: u32,
    pub reason: Option<String>,
    /// local user@host that issued it.
    pub operator: String,
    /// Where the certificate was written.
    pub certificate: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    prev: String,
    #[serde(flatten)]
    entry: Entry,
}

fn hash_line(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// What appending found out about the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterCheck {
    /// First signature recorded for this CA, or higher than the last one.
    Ok,
    /// Not above the last counter recorded for this CA.
    NotIncreasing { last: u32 },
}

/// Append `entry` under the log's lock and compare its counter with the last one this CA reported.
pub fn append(home: &Path, entry: &Entry) -> Result<CounterCheck> {
    let path = audit_path(home);
    let _lock = fsx::lock(&path)?;
    let existing = if path.exists() {
        String::from_utf8(
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not UTF-8 text", path.display()))?
    } else {
        String::new()
    };
    let prev = existing
        .lines()
        .last()
        .map_or_else(|| GENESIS.to_string(), hash_line);
    let last_counter = existing
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|l| l.entry.ca_fingerprint == entry.ca_fingerprint)
        .map(|l| l.entry.counter)
        .max();
    let line = serde_json::to_string(&Line {
        prev,
        entry: entry.clone(),
    })?;
    fsx::append_line(&path, &line, fsx::PRIVATE)?;
    Ok(match last_counter {
        Some(last) if entry.counter <= last => CounterCheck::NotIncreasing { last },
        _ => CounterCheck::Ok,
    })
}

/// Check the chain. Returns the number of entries, or an error naming the first broken line.
pub fn verify(home: &Path) -> Result<usize> {
    let path = audit_path(home);
    if !path.exists() {
        bail!("no audit log at {} (nothing issued yet)", path.display());
    }
    let text = String::from_utf8(
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    verify_text(&text).with_context(|| format!("{} has been altered", path.display()))
}

/// Check a log's text (see [`verify`]).
pub fn verify_text(text: &str) -> Result<usize> {
    let mut expected = GENESIS.to_string();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let parsed: Line = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("line {} is not an audit entry ({e})", i + 1))?;
        if parsed.prev != expected {
            bail!(
                "line {}: the chain is broken (the line before it was edited, inserted or deleted)",
                i + 1
            );
        }
        expected = hash_line(line);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: u64, counter: u32) -> Entry {
        Entry {
            time: "2026-12-04T16:00:00Z".into(),
            serial,
            key_id: format!("id-{serial}"),
            principals: vec!["ubuntu".into()],
            valid_after: "2026-12-04T15:55:00Z".into(),
            valid_before: "2026-12-04T16:10:00Z".into(),
            ca_fingerprint: "SHA256:ca".into(),
            ca_name: "primary".into(),
            cert_key_fingerprint: "SHA256:k".into(),
            flags: 1,
            counter,
            reason: None,
            operator: "carl@laptop".into(),
            certificate: "/tmp/c".into(),
        }
    }

    #[test]
    fn the_chain_detects_edits_insertions_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=3 {
            assert_eq!(
                append(dir.path(), &entry(i, i as u32)).unwrap(),
                CounterCheck::Ok
            );
        }
        assert_eq!(verify(dir.path()).unwrap(), 3);
        let text = std::fs::read_to_string(audit_path(dir.path())).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let edited = text.replace("id-2", "id-X");
        assert!(
            verify_text(&edited)
                .unwrap_err()
                .to_string()
                .contains("line 3")
        );
        let deleted = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(
            verify_text(&deleted)
                .unwrap_err()
                .to_string()
                .contains("line 2")
        );
        let swapped = format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]);
        assert!(verify_text(&swapped).is_err());
    }

    #[test]
    fn a_counter_that_does_not_increase_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &entry(1, 10)).unwrap();
        assert_eq!(
            append(dir.path(), &entry(2, 10)).unwrap(),
            CounterCheck::NotIncreasing { last: 10 }
        );
        let mut other_ca = entry(3, 1);
        other_ca.ca_fingerprint = "SHA256:other".into();
        assert_eq!(append(dir.path(), &other_ca).unwrap(), CounterCheck::Ok);
    }

    #[test]
    fn the_log_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &entry(1, 1)).unwrap();
        let mode = std::fs::metadata(audit_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
