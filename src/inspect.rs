//! What `sshbreak inspect` knows about one input: decode it, check it, and render the result as
//! text (like `ssh-keygen -L`, easier to read) or JSON.
//!
//! This module is pure: it gets the bytes of an input, the trusted CA keys (if there is a trust
//! source) and the time, and returns an [`Inspection`]. Reading files, choosing the trust source,
//! reading the clock and choosing the exit status are `commands::inspect`'s job. Every input —
//! truncated, corrupted, binary garbage, not UTF-8 — yields an `Inspection` (of kind `invalid` when
//! nothing could be decoded); nothing here panics or loops on what it reads.
//!
//! Inputs it understands: an OpenSSH certificate (the one-line text form `TYPE BASE64 COMMENT` or
//! the raw binary blob), a public key line, a bundle (several public keys, one a line; blank lines
//! and `#` comments allowed), and an OpenSSH private-key file — for a security key that is a
//! "handle" file. Of a private-key file only the public part and the handle flags are shown: never
//! key material and never the credential id (key handle).
//!
//! A certificate passes when it decodes, its CA signature verifies, it is valid at `now`, its CA
//! signature (for `sk-*` CAs) was made with user presence, and — when a trust source exists — its
//! CA is one of the trusted keys. sshd never checks the user-presence flag of a CA signature, which
//! is why this does: sshbreak never issues a certificate signed without a touch, so one that was is
//! forged with a stolen handle on an unattended key or mis-issued.
//!
//! # JSON (`--json`)
//!
//! An array with one object per input, in the order given. Field names are stable; a field that
//! does not apply is `null` (never missing).
//!
//! Inspection (one per input):
//! - `input`: the file name as given; `(stdin)` for standard input
//! - `kind`: `certificate`, `public_key`, `private_key`, `handle` (security-key private-key file),
//!   `bundle` (two or more public keys), or `invalid` (could not be decoded)
//! - `ok`: true when nothing is wrong (`problems` is empty)
//! - `error`: why the input could not be decoded (`kind` = `invalid`), else null
//! - `problems`: every reason `ok` is false, one line each (includes `error`)
//! - `warnings`: things worth knowing that do not fail the input
//! - `certificate`: a Certificate object for `kind` = `certificate`, else null
//! - `keys`: Key objects: one for a public key or private-key file, one per line for a bundle,
//!   empty otherwise
//!
//! Key:
//! - `type`: key type, e.g. `ssh-ed25519`, `sk-ecdsa-sha2-nistp256@openssh.com`
//! - `fingerprint`: `SHA256:…` as `ssh-keygen -l` prints it
//! - `application`: FIDO application (e.g. `ssh:sshbreak`) for `sk-*` keys, else null
//! - `comment`: the key's comment (`""` when none)
//! - `line`: line number in a bundle, else null
//! - `trusted`: whether the key is one of the trusted CA keys; null when there is no trust source
//! - `trust_name`: comment of the matching trust-bundle line (e.g. `primary`), else null
//! - `encrypted`: for private-key files whether they are passphrase-protected, else null
//! - `handle_flags`: for handle files the OpenSSH sk flags byte (0x01 touch required, 0x04 PIN
//!   required, 0x20 resident), else null (also for an encrypted handle)
//!
//! Certificate:
//! - `type`: e.g. `ssh-ed25519-cert-v01@openssh.com`
//! - `cert_type`: `user` or `host`
//! - `comment`: the comment after the base64 (`""` when none)
//! - `public_key`: Key — the certified key
//! - `signing_ca`: Key — the CA key (with `trusted` and `trust_name`)
//! - `signature`: Signature object
//! - `key_id`, `serial`, `principals` (array)
//! - `valid_after`, `valid_before`: Unix seconds as in the certificate (0 and 2^64-1 are the
//!   extremes)
//! - `valid_from`, `valid_to`: the same in UTC ISO 8601 (`2026-12-04T15:52:36Z`), or `always` /
//!   `forever`
//! - `status`: `valid`, `expired` or `not_yet_valid`, at `checked_at`
//! - `status_text`: e.g. `valid, expires in 7m12s`, `EXPIRED 3h ago`, `not yet valid, starts in 2m`
//! - `checked_at`: the Unix time the status refers to
//! - `critical_options`, `extensions`: objects name → value (`""` for options without a value)
//!
//! Signature:
//! - `algorithm`: e.g. `ssh-ed25519`, `rsa-sha2-512`, `sk-ecdsa-sha2-nistp256@openssh.com`
//! - `verified`: whether the CA signature verifies against the CA key over the certificate
//! - `error`: why it does not, else null
//! - `user_presence`, `user_verification`, `counter`, `flags`: from the security key's signature
//!   (`sk-*` CAs only, else null); `user_presence` false is a failure

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use sha2::{Digest, Sha256};
use signature::Verifier;
use ssh_key::encoding::Encode;
use ssh_key::encoding::base64::{Base64, Base64Unpadded, Encoding};
use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, PrivateKey, PublicKey, Signature};

use crate::token::{
    FLAG_UP, FLAG_UV, SSH_SK_RESIDENT_KEY, SSH_SK_USER_PRESENCE_REQD, SSH_SK_USER_VERIFICATION_REQD,
};
use crate::ui::human_duration;

/// The name an input read from standard input is shown under.
pub const STDIN_NAME: &str = "(stdin)";

/// What an input turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Certificate,
    PublicKey,
    PrivateKey,
    Handle,
    Bundle,
    Invalid,
}

/// Where `now` falls relative to a certificate's validity period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Valid,
    Expired,
    NotYetValid,
}

/// Everything `inspect` reports about one input. See the module documentation for the JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inspection {
    pub input: String,
    pub kind: Kind,
    pub ok: bool,
    pub error: Option<String>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub certificate: Option<CertificateInfo>,
    pub keys: Vec<KeyInfo>,
}

/// A public key as inspect shows it (also the public part of a private-key file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    #[serde(rename = "type")]
    pub key_type: String,
    pub fingerprint: String,
    pub application: Option<String>,
    pub comment: String,
    pub line: Option<usize>,
    pub trusted: Option<bool>,
    pub trust_name: Option<String>,
    pub encrypted: Option<bool>,
    pub handle_flags: Option<u8>,
}

/// The decoded fields of a certificate and the result of checking them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    #[serde(rename = "type")]
    pub cert_key_type: String,
    pub cert_type: String,
    pub comment: String,
    pub public_key: KeyInfo,
    pub signing_ca: KeyInfo,
    pub signature: SignatureInfo,
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    pub valid_from: String,
    pub valid_to: String,
    pub status: Status,
    pub status_text: String,
    pub checked_at: u64,
    pub critical_options: BTreeMap<String, String>,
    pub extensions: BTreeMap<String, String>,
}

/// The CA signature of a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignatureInfo {
    pub algorithm: String,
    pub verified: bool,
    pub error: Option<String>,
    pub user_presence: Option<bool>,
    pub user_verification: Option<bool>,
    pub counter: Option<u32>,
    pub flags: Option<u8>,
}

/// Suffix of every OpenSSH certificate key type.
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// Decode and check one input. `trusted` is the trust source's keys (None: no trust source, so
/// trust is not checked); `now` is Unix seconds.
pub fn inspect(
    input_name: &str,
    bytes: &[u8],
    trusted: Option<&[PublicKey]>,
    now: u64,
) -> Inspection {
    let mut out = Inspection {
        input: input_name.to_string(),
        kind: Kind::Invalid,
        ok: false,
        error: None,
        problems: Vec::new(),
        warnings: Vec::new(),
        certificate: None,
        keys: Vec::new(),
    };
    let trust = trusted.map(trust_index);
    let result = match decode(bytes) {
        Ok(Decoded::Certificate {
            blob,
            comment,
            declared,
        }) => inspect_certificate(
            &mut out,
            &blob,
            &comment,
            declared.as_deref(),
            trust.as_ref(),
            now,
        ),
        Ok(Decoded::Keys { kind, mut keys }) => {
            for key in &mut keys {
                mark_trust(key, trust.as_ref());
            }
            out.kind = kind;
            out.keys = keys;
            Ok(())
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        out.kind = Kind::Invalid;
        out.certificate = None;
        out.keys.clear();
        out.problems = vec![e.clone()];
        out.warnings.clear();
        out.error = Some(e);
    }
    out.ok = out.problems.is_empty();
    out
}

enum Decoded {
    Certificate {
        blob: Vec<u8>,
        comment: String,
        /// The type named in front of the base64, to be checked against the blob's own.
        declared: Option<String>,
    },
    Keys {
        kind: Kind,
        keys: Vec<KeyInfo>,
    },
}

fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "empty input: expected a certificate, public key, handle file or bundle".into(),
        );
    }
    // A binary SSH blob starts with the high byte of its type-name length, always 0; text never does.
    if bytes.first() == Some(&0) {
        return decode_binary(bytes);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(
            "binary data that is neither text nor an SSH certificate: is it the right file?".into(),
        );
    };
    let start = text.trim_start();
    if start.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return decode_private(start);
    }
    if let Some(rest) = start.strip_prefix("-----BEGIN ") {
        let label = rest.split("-----").next().unwrap_or_default();
        return Err(format!(
            "a PEM \"{}\" file: inspect reads OpenSSH certificates, public keys, private-key \
             files and bundles only",
            clean(label)
        ));
    }
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [] => Err("no key or certificate in the input, only blank lines and comments".into()),
        [(_, line)] if is_cert_line(line) => decode_cert_line(line),
        [(_, line)] => Ok(Decoded::Keys {
            kind: Kind::PublicKey,
            keys: vec![public_key_line(line)?],
        }),
        many => {
            let mut keys = Vec::with_capacity(many.len());
            for (no, line) in many {
                if is_cert_line(line) {
                    return Err(format!(
                        "line {no} is a certificate, in a file of several lines: inspect \
                         certificates one per file"
                    ));
                }
                let mut key = public_key_line(line).map_err(|e| format!("line {no}: {e}"))?;
                key.line = Some(*no);
                keys.push(key);
            }
            Ok(Decoded::Keys {
                kind: Kind::Bundle,
                keys,
            })
        }
    }
}

fn first_word(line: &str) -> (&str, &str) {
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (line, ""),
    }
}

fn is_cert_line(line: &str) -> bool {
    first_word(line).0.ends_with(CERT_SUFFIX)
}

fn decode_cert_line(line: &str) -> Result<Decoded, String> {
    let (declared, rest) = first_word(line);
    let (b64, comment) = first_word(rest);
    if b64.is_empty() {
        return Err(format!(
            "the {} line has no base64 data: it is truncated",
            clean(declared)
        ));
    }
    let blob = Base64::decode_vec(b64).map_err(|_| {
        "the certificate's base64 is damaged (bad characters or truncated): \
         copy the certificate again"
            .to_string()
    })?;
    Ok(Decoded::Certificate {
        blob,
        comment: comment.to_string(),
        declared: Some(declared.to_string()),
    })
}

fn public_key_line(line: &str) -> Result<KeyInfo, String> {
    let key = PublicKey::from_openssh(line)
        .map_err(|e| format!("not an OpenSSH public key or certificate ({e})"))?;
    if key.key_data().is_certificate() {
        return Err("a certificate whose text type does not say so: the line was altered".into());
    }
    key_info(key.key_data(), key.comment().as_str_lossy())
}

fn decode_binary(bytes: &[u8]) -> Result<Decoded, String> {
    let is_cert = leading_string(bytes).is_some_and(|name| name.ends_with(CERT_SUFFIX.as_bytes()));
    if is_cert {
        return Ok(Decoded::Certificate {
            blob: bytes.to_vec(),
            comment: String::new(),
            declared: None,
        });
    }
    let key = PublicKey::from_bytes(bytes).map_err(|e| {
        format!("binary data that is not an SSH certificate or public key blob ({e})")
    })?;
    Ok(Decoded::Keys {
        kind: Kind::PublicKey,
        keys: vec![key_info(key.key_data(), "")?],
    })
}

/// The first SSH `string` of a blob (its type name), if the blob is long enough to hold it.
fn leading_string(bytes: &[u8]) -> Option<&[u8]> {
    let len: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    bytes.get(4..4usize.checked_add(len)?)
}

fn decode_private(text: &str) -> Result<Decoded, String> {
    let key = PrivateKey::from_openssh(text).map_err(|e| {
        format!("an OpenSSH private-key file that cannot be read ({e}): it is truncated or corrupt")
    })?;
    let mut info = key_info(key.public_key().key_data(), key.comment().as_str_lossy())?;
    // Only the flags byte is taken from the secret part: never the key or the credential id.
    let (encrypted, flags) = match key.key_data() {
        KeypairData::Encrypted(_) => (true, None),
        KeypairData::SkEcdsaSha2NistP256(sk) => (false, Some(sk.flags())),
        KeypairData::SkEd25519(sk) => (false, Some(sk.flags())),
        _ => (false, None),
    };
    info.encrypted = Some(encrypted);
    info.handle_flags = flags;
    let kind = if info.application.is_some() {
        Kind::Handle
    } else {
        Kind::PrivateKey
    };
    Ok(Decoded::Keys {
        kind,
        keys: vec![info],
    })
}

fn key_info(key: &KeyData, comment: &str) -> Result<KeyInfo, String> {
    // ssh-key accepts any type name as an opaque key; nothing about such a key can be checked,
    // and a damaged type name would otherwise pass as one.
    match key {
        KeyData::Other(_) => {
            return Err(format!(
                "unknown key type `{}`: not an OpenSSH key sshbreak can read (damaged?)",
                clean(key.algorithm().as_str())
            ));
        }
        // ssh-key also decodes a certificate of an unknown type this way.
        KeyData::Certificate(_) => {
            return Err(format!(
                "a certificate of unknown type `{}` where a key was expected (damaged?)",
                clean(key.algorithm().as_str())
            ));
        }
        _ => {}
    }
    let application = match key {
        KeyData::SkEcdsaSha2NistP256(sk) => Some(sk.application().to_string()),
        KeyData::SkEd25519(sk) => Some(sk.application().to_string()),
        _ => None,
    };
    Ok(KeyInfo {
        key_type: key.algorithm().as_str().to_string(),
        fingerprint: fingerprint(key)?,
        application,
        comment: comment.to_string(),
        line: None,
        trusted: None,
        trust_name: None,
        encrypted: None,
        handle_flags: None,
    })
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of the key blob, as `ssh-keygen -l` prints it.
/// Computed here rather than with `KeyData::fingerprint`, which panics if the key cannot be
/// encoded; a decoded key always can be, but an error is cheaper than trusting that.
fn fingerprint(key: &KeyData) -> Result<String, String> {
    let blob = key
        .encode_vec()
        .map_err(|e| format!("cannot encode the {} key ({e})", key.algorithm()))?;
    Ok(format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(&blob))
    ))
}

/// The trust source by fingerprint (a hash of the whole key blob, application included — not the
/// comment), with the name of the first line that holds each key. Built once per input so that a
/// big bundle checked against a big trust source stays linear.
type TrustIndex = HashMap<String, Option<String>>;

fn trust_index(trusted: &[PublicKey]) -> TrustIndex {
    let mut index = TrustIndex::new();
    for key in trusted {
        let Ok(fp) = fingerprint(key.key_data()) else {
            continue;
        };
        let name = Some(key.comment().as_str_lossy().trim().to_string()).filter(|c| !c.is_empty());
        let entry = index.entry(fp).or_insert(None);
        if entry.is_none() {
            *entry = name;
        }
    }
    index
}

fn mark_trust(key: &mut KeyInfo, trust: Option<&TrustIndex>) {
    let Some(trust) = trust else {
        return;
    };
    let found = trust.get(&key.fingerprint);
    key.trusted = Some(found.is_some());
    key.trust_name = found.cloned().flatten();
}

fn inspect_certificate(
    out: &mut Inspection,
    blob: &[u8],
    comment: &str,
    declared: Option<&str>,
    trust: Option<&TrustIndex>,
    now: u64,
) -> Result<(), String> {
    let cert = Certificate::from_bytes(blob).map_err(|e| {
        format!("cannot decode the certificate ({e}): it is truncated or corrupt; copy it again")
    })?;
    let actual = cert.algorithm().to_certificate_type();
    if let Some(declared) = declared
        && declared != actual
    {
        return Err(format!(
            "the line says {} but holds a {actual}: it was altered",
            clean(declared)
        ));
    }
    let public_key = key_info(cert.public_key(), "")?;
    let mut signing_ca = key_info(cert.signature_key(), "")?;
    mark_trust(&mut signing_ca, trust);
    let signature = check_signature(&cert, blob);

    let (valid_after, valid_before) = (cert.valid_after(), cert.valid_before());
    let (status, status_text) = validity_status(valid_after, valid_before, now);

    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Some(e) = &signature.error {
        problems.push(e.clone());
    } else if signature.user_presence == Some(false) {
        // Only meaningful once the signature verifies: unverified flags could be anyone's.
        problems.push(
            "the CA signed without user presence (no touch): sshbreak never issues such a \
             certificate — treat it as forged or mis-issued"
                .to_string(),
        );
    }
    if status != Status::Valid {
        problems.push(status_text.clone());
    }
    match signing_ca.trusted {
        Some(false) => problems.push(format!(
            "the signing CA {} is not one of the trusted CA keys",
            signing_ca.fingerprint
        )),
        Some(true) => {}
        None => warnings.push(
            "no trust source: whether the CA is trusted was not checked (pass --ca FILE)"
                .to_string(),
        ),
    }
    if cert.valid_principals().is_empty() {
        warnings.push(
            "no principals: the certificate is valid for every account on hosts that trust its CA"
                .to_string(),
        );
    }
    if valid_before == u64::MAX {
        warnings.push("the certificate never expires".to_string());
    }

    out.kind = Kind::Certificate;
    out.problems = problems;
    out.warnings = warnings;
    out.certificate = Some(CertificateInfo {
        cert_key_type: actual,
        cert_type: if cert.cert_type().is_host() {
            "host"
        } else {
            "user"
        }
        .to_string(),
        comment: comment.to_string(),
        public_key,
        signing_ca,
        signature,
        key_id: cert.key_id().to_string(),
        serial: cert.serial(),
        principals: cert.valid_principals().to_vec(),
        valid_after,
        valid_before,
        valid_from: time_text(valid_after),
        valid_to: time_text(valid_before),
        status,
        status_text,
        checked_at: now,
        critical_options: cert
            .critical_options()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        extensions: cert
            .extensions()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    Ok(())
}

fn check_signature(cert: &Certificate, blob: &[u8]) -> SignatureInfo {
    let sig = cert.signature();
    let trailer = sk_trailer(sig);
    let error = verify(cert, blob).err();
    SignatureInfo {
        algorithm: sig.algorithm().as_str().to_string(),
        verified: error.is_none(),
        error,
        user_presence: trailer.map(|(flags, _)| flags & FLAG_UP != 0),
        user_verification: trailer.map(|(flags, _)| flags & FLAG_UV != 0),
        counter: trailer.map(|(_, counter)| counter),
        flags: trailer.map(|(flags, _)| flags),
    }
}

/// Flags and counter of a security-key signature. In ssh-key the signature bytes of both sk
/// algorithms end with them: `mpint r ‖ mpint s ‖ flags ‖ u32 counter` for sk-ecdsa,
/// `sig[64] ‖ flags ‖ u32 counter` for sk-ed25519.
fn sk_trailer(sig: &Signature) -> Option<(u8, u32)> {
    if !matches!(
        sig.algorithm(),
        Algorithm::SkEcdsaSha2NistP256 | Algorithm::SkEd25519
    ) {
        return None;
    }
    let [flags, c0, c1, c2, c3] = *sig.as_bytes().last_chunk::<5>()?;
    Some((flags, u32::from_be_bytes([c0, c1, c2, c3])))
}

fn verify(cert: &Certificate, blob: &[u8]) -> Result<(), String> {
    const ALTERED: &str = "the CA signature is INVALID: the certificate was altered or is corrupt";
    // sshd checks the signature over the bytes it received, ssh-key over its own re-encoding of
    // the fields; the two agree only if the certificate re-encodes to exactly the bytes read
    // (ssh-key's decoder ignores bytes left over inside a length-prefixed field). OpenSSH always
    // writes that canonical form, so anything else has been tampered with.
    let reencoded = cert.to_bytes().map_err(|_| ALTERED.to_string())?;
    if reencoded != blob {
        return Err(
            "the certificate is not canonically encoded (stray bytes inside a field): it was \
             altered or is corrupt"
                .into(),
        );
    }
    let sig = cert.signature();
    let sig_len = sig
        .encoded_len_prefixed()
        .map_err(|_| ALTERED.to_string())?;
    let signed = blob
        .len()
        .checked_sub(sig_len)
        .and_then(|n| blob.get(..n))
        .ok_or_else(|| ALTERED.to_string())?;
    let ca = cert.signature_key();
    if matches!(ca, KeyData::Dsa(_) | KeyData::Other(_)) {
        return Err(format!(
            "cannot check a signature by a {} CA",
            clean(ca.algorithm().as_str())
        ));
    }
    ca.verify(signed, sig).map_err(|_| ALTERED.to_string())
}

/// Status at `now`: valid when `valid_after <= now < valid_before`, as sshd decides.
fn validity_status(valid_after: u64, valid_before: u64, now: u64) -> (Status, String) {
    if now < valid_after {
        let wait = human_duration(valid_after - now);
        (
            Status::NotYetValid,
            format!("not yet valid, starts in {wait}"),
        )
    } else if now >= valid_before {
        let ago = human_duration(now - valid_before);
        (Status::Expired, format!("EXPIRED {ago} ago"))
    } else if valid_before == u64::MAX {
        (Status::Valid, "valid, never expires".to_string())
    } else {
        let left = human_duration(valid_before - now);
        (Status::Valid, format!("valid, expires in {left}"))
    }
}

/// A certificate time in UTC ISO 8601; the two extremes are `always` (0) and `forever` (2^64-1).
pub fn time_text(t: u64) -> String {
    match t {
        0 => "always".to_string(),
        u64::MAX => "forever".to_string(),
        _ => crate::timefmt::iso(t),
    }
}

/// Text from an input made safe for a terminal: control characters (newlines, escape sequences)
/// are shown escaped, so a crafted key id cannot forge output lines or drive the terminal.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

const LABEL_WIDTH: usize = 18;

fn field(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "  {:<LABEL_WIDTH$}{value}", format!("{label}:"));
}

/// Several values: the first next to the label, the rest aligned under it; `(none)` for none.
fn list(out: &mut String, label: &str, values: &[String]) {
    if values.is_empty() {
        field(out, label, "(none)");
        return;
    }
    for (i, v) in values.iter().enumerate() {
        if i == 0 {
            field(out, label, v);
        } else {
            let _ = writeln!(out, "  {:<LABEL_WIDTH$}{v}", "");
        }
    }
}

fn options(map: &BTreeMap<String, String>) -> Vec<String> {
    map.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                clean(k)
            } else {
                format!("{} {}", clean(k), clean(v))
            }
        })
        .collect()
}

fn key_line(key: &KeyInfo) -> String {
    let mut s = format!("{} {}", clean(&key.key_type), key.fingerprint);
    if let Some(app) = &key.application {
        let _ = write!(s, " application {}", clean(app));
    }
    match (&key.trusted, &key.trust_name) {
        (Some(true), Some(name)) => {
            let _ = write!(s, " \"{}\" (trusted)", clean(name));
        }
        (Some(true), None) => s.push_str(" (trusted)"),
        (Some(false), _) => s.push_str(" (NOT trusted)"),
        (None, _) => {}
    }
    s
}

impl Inspection {
    /// The human-readable report. An input that could not be decoded is one line.
    pub fn to_text(&self) -> String {
        let input = clean(&self.input);
        let verdict = if self.ok { "OK" } else { "FAILED" };
        let mut out = String::new();
        match self.kind {
            Kind::Invalid => {
                let error = self.error.as_deref().unwrap_or("cannot be decoded");
                let _ = writeln!(out, "{input}: invalid: {}", clean(error));
                return out;
            }
            Kind::Certificate => {
                let _ = writeln!(out, "{input}: certificate: {verdict}");
                if let Some(c) = &self.certificate {
                    render_certificate(&mut out, c);
                }
            }
            Kind::Bundle => {
                let _ = writeln!(
                    out,
                    "{input}: bundle of {} keys: {verdict}",
                    self.keys.len()
                );
                for key in &self.keys {
                    let mut line = key_line(key);
                    if !key.comment.is_empty() {
                        let _ = write!(line, " comment \"{}\"", clean(&key.comment));
                    }
                    field(&mut out, &format!("line {}", key.line.unwrap_or(0)), &line);
                }
            }
            Kind::PublicKey | Kind::PrivateKey | Kind::Handle => {
                let what = match self.kind {
                    Kind::PublicKey => "public key",
                    Kind::Handle => "security-key handle file (public part only)",
                    _ => "private-key file (public part only)",
                };
                let _ = writeln!(out, "{input}: {what}: {verdict}");
                for key in &self.keys {
                    render_key(&mut out, key);
                }
            }
        }
        for p in &self.problems {
            field(&mut out, "FAILED", &clean(p));
        }
        for w in &self.warnings {
            field(&mut out, "warning", &clean(w));
        }
        out
    }
}

fn render_key(out: &mut String, key: &KeyInfo) {
    field(out, "Type", &clean(&key.key_type));
    field(out, "Fingerprint", &key.fingerprint);
    if let Some(app) = &key.application {
        field(out, "Application", &clean(app));
    }
    if let Some(flags) = key.handle_flags {
        let mut names = Vec::new();
        if flags & SSH_SK_USER_PRESENCE_REQD != 0 {
            names.push("touch required");
        }
        if flags & SSH_SK_USER_VERIFICATION_REQD != 0 {
            names.push("PIN required");
        }
        if flags & SSH_SK_RESIDENT_KEY != 0 {
            names.push("resident");
        }
        field(
            out,
            "Handle flags",
            &format!("{flags:#04x} ({})", names.join(", ")),
        );
    }
    if key.encrypted == Some(true) {
        field(out, "Encrypted", "yes (passphrase)");
    }
    if !key.comment.is_empty() {
        field(out, "Comment", &format!("\"{}\"", clean(&key.comment)));
    }
    match (key.trusted, &key.trust_name) {
        (Some(true), Some(name)) => field(out, "Trusted CA", &format!("yes (\"{}\")", clean(name))),
        (Some(true), None) => field(out, "Trusted CA", "yes"),
        (Some(false), _) => field(out, "Trusted CA", "no"),
        (None, _) => {}
    }
}

fn render_certificate(out: &mut String, c: &CertificateInfo) {
    field(
        out,
        "Type",
        &format!("{} {} certificate", clean(&c.cert_key_type), c.cert_type),
    );
    field(out, "Public key", &key_line(&c.public_key));
    field(out, "Signing CA", &key_line(&c.signing_ca));
    let s = &c.signature;
    let mut sig = format!(
        "{} ({})",
        if s.verified { "valid" } else { "INVALID" },
        clean(&s.algorithm)
    );
    if let (Some(up), Some(uv), Some(counter)) = (s.user_presence, s.user_verification, s.counter) {
        let _ = write!(
            sig,
            ", user presence: {}, user verification: {}, counter: {counter}",
            yes_no(up),
            yes_no(uv)
        );
    }
    field(out, "CA signature", &sig);
    field(out, "Key ID", &format!("\"{}\"", clean(&c.key_id)));
    field(out, "Serial", &c.serial.to_string());
    let valid = if c.valid_after == 0 && c.valid_before == u64::MAX {
        "forever".to_string()
    } else {
        format!("from {} to {}", c.valid_from, c.valid_to)
    };
    field(out, "Valid", &valid);
    field(out, "Status", &c.status_text);
    let principals: Vec<String> = c.principals.iter().map(|p| clean(p)).collect();
    list(out, "Principals", &principals);
    list(out, "Critical options", &options(&c.critical_options));
    list(out, "Extensions", &options(&c.extensions));
    if !c.comment.is_empty() {
        field(out, "Comment", &format!("\"{}\"", clean(&c.comment)));
    }
}

/// The `--json` form: a pretty-printed array, one object per input.
pub fn to_json(items: &[Inspection]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T15:52:36Z.
    const NOW: u64 = 1_796_399_556;

    #[test]
    fn times_are_utc_iso_8601_with_words_for_the_extremes() {
        assert_eq!(time_text(NOW), "2026-12-04T15:52:36Z");
        assert_eq!(time_text(1), "1970-01-01T00:00:01Z");
        assert_eq!(time_text(0), "always");
        assert_eq!(time_text(u64::MAX), "forever");
        assert_eq!(time_text(u64::MAX - 1), "@18446744073709551614");
    }

    #[test]
    fn status_reads_relative_to_now() {
        assert_eq!(
            validity_status(NOW - 60, NOW + 432, NOW),
            (Status::Valid, "valid, expires in 7m12s".into())
        );
        assert_eq!(
            validity_status(NOW - 7200, NOW - 3 * 3600, NOW),
            (Status::Expired, "EXPIRED 3h ago".into())
        );
        assert_eq!(
            validity_status(NOW + 120, NOW + 600, NOW),
            (Status::NotYetValid, "not yet valid, starts in 2m".into())
        );
        // valid_before is exclusive, valid_after inclusive, as in sshd.
        assert_eq!(validity_status(NOW, NOW + 1, NOW).0, Status::Valid);
        assert_eq!(validity_status(NOW - 1, NOW, NOW).0, Status::Expired);
        assert_eq!(
            validity_status(0, u64::MAX, NOW).1,
            "valid, never expires".to_string()
        );
    }

    #[test]
    fn the_sk_trailer_is_flags_then_a_big_endian_counter() {
        let body = crate::token::ssh_signature_body(&[1; 32], &[2; 32], FLAG_UP | FLAG_UV, 258);
        let sig = Signature::new(Algorithm::SkEcdsaSha2NistP256, body).unwrap();
        assert_eq!(sk_trailer(&sig), Some((FLAG_UP | FLAG_UV, 258)));
        let plain = Signature::new(Algorithm::Ed25519, vec![0u8; 64]).unwrap();
        assert_eq!(sk_trailer(&plain), None);
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(clean("plain id"), "plain id");
        assert_eq!(clean("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn garbage_is_one_invalid_line_never_a_panic() {
        let inputs: [&[u8]; 9] = [
            b"",
            b"\n\n  \n",
            b"# only a comment\n",
            b"\xff\xfe\x00garbage",
            b"\x00\x00\x00",
            b"\x00\x00\xff\xffssh-ed25519-cert-v01@openssh.com",
            b"ssh-ed25519-cert-v01@openssh.com AAAA",
            b"ssh-ed25519-cert-v01@openssh.com",
            b"-----BEGIN RSA PRIVATE KEY-----\nMII\n-----END RSA PRIVATE KEY-----\n",
        ];
        for input in inputs {
            let i = inspect("x", input, None, NOW);
            assert_eq!(i.kind, Kind::Invalid, "{input:?}");
            assert!(!i.ok);
            assert_eq!(i.problems.len(), 1);
            assert_eq!(i.to_text().lines().count(), 1, "{}", i.to_text());
        }
    }

    const CERT: &str = include_str!("../tests/fixtures/inspect/ed25519-ca-cert.pub");
    const CA: &str = include_str!("../tests/fixtures/inspect/ca_ed25519.pub");

    #[test]
    fn a_fixture_certificate_checks_out_at_a_fixed_time() {
        let ca = PublicKey::from_openssh(CA).unwrap();
        let i = inspect("c", CERT.as_bytes(), Some(std::slice::from_ref(&ca)), NOW);
        assert!(i.ok, "{i:?}");
        let c = i.certificate.as_ref().unwrap();
        assert_eq!(c.key_id, "fixture ed25519");
        assert_eq!(c.principals, ["alice", "bob"]);
        assert_eq!(c.valid_from, "2025-01-01T00:00:00Z");
        assert_eq!(c.critical_options["force-command"], "/bin/true");
        assert_eq!(
            c.signing_ca.trust_name.as_deref(),
            Some("fixture ed25519 CA")
        );
        let text = i.to_text();
        assert!(text.starts_with("c: certificate: OK\n"), "{text}");
        assert!(
            text.contains("  Principals:       alice\n                    bob\n"),
            "{text}"
        );

        let later = inspect("c", CERT.as_bytes(), Some(&[ca]), 2_051_222_400 + 3 * 3600);
        assert!(!later.ok);
        assert_eq!(later.problems, ["EXPIRED 3h ago"]);
    }

    #[test]
    fn stray_bytes_inside_a_field_are_not_accepted() {
        // ssh-key's decoder ignores what is left inside a length-prefixed field; sshd does not, and
        // the signature would be checked over bytes other than those read. Grow the signature
        // field by one byte and append it.
        let cert = Certificate::from_openssh(CERT).unwrap();
        let mut blob = cert.to_bytes().unwrap();
        let sig_len = cert.signature().encoded_len_prefixed().unwrap();
        let at = blob.len() - sig_len;
        let inner = u32::from_be_bytes(blob[at..at + 4].try_into().unwrap());
        blob[at..at + 4].copy_from_slice(&(inner + 1).to_be_bytes());
        blob.push(0);
        assert!(
            Certificate::from_bytes(&blob).is_ok(),
            "ssh-key still decodes it"
        );
        let i = inspect("c", &blob, None, NOW);
        assert!(!i.ok);
        let sig = &i.certificate.as_ref().unwrap().signature;
        assert!(!sig.verified);
        assert!(
            sig.error
                .as_ref()
                .unwrap()
                .contains("not canonically encoded")
        );
    }

    #[test]
    fn a_public_key_line_shows_type_and_fingerprint() {
        // Fingerprint from `ssh-keygen -l -f` of this key.
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSL/MLNcGQY0xCcp/3+/zG+pss00O+5M4h7NpWQ9yry a";
        let key = PublicKey::from_openssh(line).unwrap();
        let i = inspect("k.pub", line.as_bytes(), Some(&[key]), NOW);
        assert!(i.ok, "{i:?}");
        assert_eq!(i.kind, Kind::PublicKey);
        let k = &i.keys[0];
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.fingerprint, {
            let pk = PublicKey::from_openssh(line).unwrap();
            pk.fingerprint(ssh_key::HashAlg::Sha256).to_string()
        });
        assert_eq!(k.trusted, Some(true));
        assert_eq!(k.trust_name.as_deref(), Some("a"));
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["keys"][0]["type"], "ssh-ed25519");
        assert!(json["certificate"].is_null());
    }
}
