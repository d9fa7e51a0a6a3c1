//! `sshbreak inspect` against the real `ssh-keygen`: it must agree with `ssh-keygen -L` on every
//! field, catch tampered, expired, not-yet-valid and untrusted certificates, show the user-presence
//! flag of a security-key CA signature, show only the public part of handle files, and survive any
//! corruption of its input.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use sha2::{Digest, Sha256};
use ssh_key::encoding::base64::{Base64, Encoding};
use ssh_key::private::Ed25519Keypair;
use ssh_key::public::{KeyData, SkEd25519};
use ssh_key::{Algorithm, Certificate, PublicKey, Signature};

use sshbreak::inspect::{Kind, inspect};
use sshbreak::token::{FLAG_UP, FLAG_UV, TokenSpec};

use common::text;

/// A fixed "now" for the pure checks: 2026-12-04T15:52:36Z, inside the fixtures' validity
/// (2025-01-01 .. 2035-01-01, see tests/fixtures/inspect/generate.sh).
const NOW: u64 = 1_796_399_556;
/// Property-test cases; each applies one to three mutations to a valid certificate.
const CORRUPTION_CASES: u32 = 4000;

const FIXTURE_CERTS: [(&str, &str); 3] = [
    (
        include_str!("fixtures/inspect/ed25519-ca-cert.pub"),
        include_str!("fixtures/inspect/ca_ed25519.pub"),
    ),
    (
        include_str!("fixtures/inspect/ecdsa-ca-cert.pub"),
        include_str!("fixtures/inspect/ca_ecdsa.pub"),
    ),
    (
        include_str!("fixtures/inspect/rsa-ca-cert.pub"),
        include_str!("fixtures/inspect/ca_rsa.pub"),
    ),
];

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `sshbreak` with a fresh, empty home (so no default trust bundle) and no token configured.
fn sshbreak(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sshbreak"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("SSHBREAK_HOME", dir.join("no-home"));
    c
}

fn inspect_cmd(dir: &Path, args: &[&Path]) -> Output {
    common::run(sshbreak(dir).arg("inspect").args(args))
}

/// `ssh-keygen` in UTC: `-L` prints validity times in local time, and `-V` dates are local too.
fn keygen(args: &[&str]) -> Output {
    let out = common::run(Command::new("ssh-keygen").env("TZ", "UTC").args(args));
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", text(&out));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A new key pair `<dir>/<name>` (and `.pub`) of type `t`.
fn new_key(dir: &Path, name: &str, t: &str) -> PathBuf {
    let path = dir.join(name);
    keygen(&["-q", "-t", t, "-N", "", "-C", name, "-f", s(&path)]);
    path
}

/// Sign `<user>.pub` with `ca`; returns the certificate, moved to `<user>-<id>-cert.pub` (ssh-keygen
/// always writes `<user>-cert.pub`, which the next signature would overwrite).
fn sign(ca: &Path, user: &Path, id: &str, extra: &[&str]) -> PathBuf {
    let pubkey = user.with_extension("pub");
    let mut args = vec!["-q", "-s", s(ca), "-I", id];
    args.extend_from_slice(extra);
    args.push(s(&pubkey));
    keygen(&args);
    let written = PathBuf::from(format!("{}-cert.pub", user.display()));
    let kept = PathBuf::from(format!("{}-{id}-cert.pub", user.display()).replace(' ', "_"));
    std::fs::rename(&written, &kept).unwrap();
    kept
}

fn json_of(out: &Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)));
    v.as_array().expect("a JSON array").clone()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `ssh-keygen -L` says about a certificate.
#[derive(Debug, Default)]
struct KeygenView {
    cert_type: String,
    public_fp: String,
    ca_fp: String,
    ca_sig_alg: String,
    key_id: String,
    serial: u64,
    valid_from: String,
    valid_to: String,
    principals: Vec<String>,
    critical: Vec<String>,
    extensions: Vec<String>,
}

fn keygen_view(cert: &Path) -> KeygenView {
    let out = keygen(&["-L", "-f", s(cert)]);
    let mut v = KeygenView::default();
    let mut section: Option<&str> = None;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // List items are indented 16 columns, fields 8.
        if line.starts_with("                ") {
            let item = line.trim().to_string();
            match section {
                Some("Principals") => v.principals.push(item),
                Some("Critical Options") => v.critical.push(item),
                Some("Extensions") => v.extensions.push(item),
                other => panic!("list item outside a list ({other:?}): {line}"),
            }
            continue;
        }
        let Some((label, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        let words: Vec<&str> = value.split_whitespace().collect();
        section = None;
        match label {
            "Type" => v.cert_type = value.to_string(),
            "Public key" => v.public_fp = words[1].to_string(),
            "Signing CA" => {
                v.ca_fp = words[1].to_string();
                v.ca_sig_alg = words[3].trim_end_matches(')').to_string();
            }
            "Key ID" => v.key_id = value.trim_matches('"').to_string(),
            "Serial" => v.serial = value.parse().unwrap(),
            "Valid" => {
                // "from 2026-12-04T15:47:00 to 2026-12-04T16:52:00" (UTC, thanks to TZ=UTC).
                assert_eq!(words[0], "from", "{line}");
                v.valid_from = words[1].to_string();
                v.valid_to = words[3].to_string();
            }
            "Principals" | "Critical Options" | "Extensions" if value != "(none)" => {
                section = Some(label);
            }
            _ => {}
        }
    }
    v
}

fn options_as_keygen_lists(map: &Value) -> Vec<String> {
    map.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| match v.as_str().unwrap() {
            "" => k.clone(),
            v => format!("{k} {v}"),
        })
        .collect()
}

/// The fingerprint `ssh-keygen -l` prints for a public key file.
fn keygen_fingerprint(pubkey: &Path) -> String {
    let out = keygen(&["-l", "-E", "sha256", "-f", s(pubkey)]);
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn agrees_with_ssh_keygen_for_ed25519_ecdsa_and_rsa_cas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user = new_key(d, "user", "ed25519");
    for (t, options) in [
        ("ed25519", &["-O", "force-command=/bin/true"][..]),
        ("ecdsa", &[][..]),
        (
            "rsa",
            &["-O", "force-command=/bin/true", "-O", "no-pty"][..],
        ),
    ] {
        let ca = new_key(d, &format!("ca_{t}"), t);
        let bundle = ca.with_extension("pub");
        let mut args = vec!["-n", "alice,bob", "-z", "42"];
        args.extend_from_slice(&["-V", "-5m:+1h"]);
        args.extend_from_slice(options);
        let cert = sign(&ca, &user, &format!("id of the {t} cert"), &args);
        let kg = keygen_view(&cert);

        let out = inspect_cmd(d, &[Path::new("--ca"), &bundle, &cert]);
        assert_eq!(out.status.code(), Some(0), "{t}: {}", text(&out));
        let report = stdout(&out);
        assert!(report.contains("certificate: OK"), "{report}");
        assert!(
            report.contains(&format!("Type:             {}", kg.cert_type)),
            "{report}"
        );
        assert!(
            report.contains(&format!("Key ID:           \"{}\"", kg.key_id)),
            "{report}"
        );
        assert!(
            report.contains(&format!("Serial:           {}", kg.serial)),
            "{report}"
        );
        assert!(
            report.contains(&format!(
                "Valid:            from {}Z to {}Z",
                kg.valid_from, kg.valid_to
            )),
            "{report}"
        );
        assert!(report.contains("Principals:       alice\n"), "{report}");
        assert!(report.contains(&kg.public_fp), "{report}");
        assert!(report.contains(&kg.ca_fp), "{report}");
        assert!(
            report.contains(&format!("valid ({})", kg.ca_sig_alg)),
            "{report}"
        );
        // "1h" or "59m59s", depending on when the second ticks: the exact wording is unit-tested
        // with fixed times in src/inspect.rs.
        assert!(
            report.contains("Status:           valid, expires in "),
            "{report}"
        );
        for item in kg
            .critical
            .iter()
            .chain(&kg.extensions)
            .chain(&kg.principals)
        {
            assert!(report.contains(item.as_str()), "{item} missing:\n{report}");
        }

        let out = inspect_cmd(d, &[Path::new("--json"), Path::new("--ca"), &bundle, &cert]);
        assert_eq!(out.status.code(), Some(0), "{t}: {}", text(&out));
        let items = json_of(&out);
        assert_eq!(items.len(), 1);
        let i = &items[0];
        assert_eq!(i["kind"], "certificate");
        assert_eq!(i["ok"], true);
        assert!(i["error"].is_null());
        assert_eq!(i["problems"], Value::Array(vec![]));
        let c = &i["certificate"];
        assert_eq!(
            format!(
                "{} {} certificate",
                c["type"].as_str().unwrap(),
                c["cert_type"].as_str().unwrap()
            ),
            kg.cert_type
        );
        assert_eq!(c["key_id"], kg.key_id.as_str());
        assert_eq!(c["serial"], kg.serial);
        assert_eq!(c["valid_from"], format!("{}Z", kg.valid_from));
        assert_eq!(c["valid_to"], format!("{}Z", kg.valid_to));
        assert_eq!(c["status"], "valid");
        assert_eq!(c["principals"], serde_json::json!(kg.principals));
        assert_eq!(options_as_keygen_lists(&c["critical_options"]), kg.critical);
        assert_eq!(options_as_keygen_lists(&c["extensions"]), kg.extensions);
        assert_eq!(c["public_key"]["fingerprint"], kg.public_fp.as_str());
        assert_eq!(
            c["public_key"]["fingerprint"],
            keygen_fingerprint(&user.with_extension("pub"))
        );
        assert_eq!(c["signing_ca"]["fingerprint"], kg.ca_fp.as_str());
        assert_eq!(c["signing_ca"]["trusted"], true);
        assert_eq!(c["signing_ca"]["trust_name"], format!("ca_{t}"));
        assert_eq!(c["signature"]["algorithm"], kg.ca_sig_alg.as_str());
        assert_eq!(c["signature"]["verified"], true);
        assert!(c["signature"]["user_presence"].is_null());
        let (after, before) = (
            c["valid_after"].as_u64().unwrap(),
            c["valid_before"].as_u64().unwrap(),
        );
        assert_eq!(before - after, 65 * 60);
        assert!(c["checked_at"].as_u64().unwrap() >= after);
    }
}

#[test]
fn tampered_expired_early_and_untrusted_certificates_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user = new_key(d, "user", "ed25519");
    let ca = new_key(d, "ca", "ed25519");
    let other_ca = new_key(d, "other", "ecdsa");
    let bundle = ca.with_extension("pub");
    let ca_flag = Path::new("--ca");

    let good = sign(&ca, &user, "good", &["-n", "alice", "-V", "-5m:+1h"]);

    // Flip one byte of the nonce: the structure still decodes, the signature no longer matches.
    let line = std::fs::read_to_string(&good).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let mut blob = Base64::decode_vec(fields[1]).unwrap();
    let nonce_at = 4 + fields[0].len() + 4;
    blob[nonce_at + 5] ^= 0x01;
    let tampered = d.join("tampered-cert.pub");
    std::fs::write(
        &tampered,
        format!("{} {} x\n", fields[0], Base64::encode_string(&blob)),
    )
    .unwrap();
    let out = inspect_cmd(d, &[ca_flag, &bundle, &tampered]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("CA signature:     INVALID"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains("FAILED:           the CA signature is INVALID"),
        "{}",
        text(&out)
    );

    let expired = sign(
        &ca,
        &user,
        "old",
        &["-n", "alice", "-V", "20200101:20200102"],
    );
    let out = inspect_cmd(d, &[ca_flag, &bundle, &expired]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("Status:           EXPIRED "),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out)
            .contains("Valid:            from 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z")
    );

    let early = sign(&ca, &user, "early", &["-n", "alice", "-V", "+1d:+2d"]);
    let out = inspect_cmd(d, &[ca_flag, &bundle, &early]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("not yet valid, starts in 1d"),
        "{}",
        text(&out)
    );

    let out = inspect_cmd(d, &[ca_flag, &other_ca.with_extension("pub"), &good]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("(NOT trusted)"), "{}", text(&out));
    assert!(
        stdout(&out).contains("is not one of the trusted CA keys"),
        "{}",
        text(&out)
    );

    // Without any trust source the certificate itself is fine; the report says trust went unchecked.
    let out = inspect_cmd(d, &[&good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("warning:          no trust source"),
        "{}",
        text(&out)
    );

    // Several inputs, one bad: every input is reported, the run fails.
    let out = inspect_cmd(d, &[ca_flag, &bundle, &good, &expired, &bundle]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    for p in [&good, &expired, &bundle] {
        assert!(
            report.contains(&format!("{}: ", p.display())),
            "{} missing:\n{report}",
            p.display()
        );
    }
    let out = inspect_cmd(d, &[Path::new("--json"), ca_flag, &bundle, &good, &expired]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let items = json_of(&out);
    assert_eq!(items.len(), 2);
    assert_eq!(
        (&items[0]["ok"], &items[1]["ok"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(items[1]["certificate"]["status"], "expired");

    // A missing file: exit 2 and a message on stderr, the other inputs still reported.
    let missing = d.join("no-such-cert.pub");
    let out = inspect_cmd(d, &[ca_flag, &bundle, &missing, &good]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("sshbreak: cannot read {}", missing.display())),
        "{err}"
    );
    assert!(stdout(&out).contains(&format!("{}: certificate: OK", good.display())));
    // A missing --ca file is a usage error too.
    let out = inspect_cmd(d, &[ca_flag, &missing, &good]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // `-` (and no file at all) reads standard input; so does a raw binary certificate.
    for (args, data) in [
        (vec!["-"], line.clone().into_bytes()),
        (vec![], line.clone().into_bytes()),
        (vec!["-"], Base64::decode_vec(fields[1]).unwrap()),
    ] {
        let mut child = sshbreak(d)
            .arg("inspect")
            .arg("--ca")
            .arg(&bundle)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&data).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(
            stdout(&out).starts_with("(stdin): certificate: OK"),
            "{}",
            text(&out)
        );
    }
}

/// Signs like a security key would, with a software key and chosen flags — a test double for a
/// token that signs without a touch. The soft token only does that when SSHBREAK_SOFT_TOKEN_NO_TOUCH
/// is set in its process; setting it here would race with the other tests of this binary that sign
/// with the soft token on other threads, and a child process would add a lot of machinery for the
/// same bytes. The wire format is the one `sshbreak::token` produces (same helpers), and ssh-key
/// verifies it, so what is tested is inspect's reading of the flags and counter.
enum FakeSk {
    Ecdsa(p256::ecdsa::SigningKey),
    Ed25519(Ed25519Keypair),
}

struct FakeSkSigner {
    key: FakeSk,
    application: String,
    flags: u8,
    counter: u32,
}

impl FakeSkSigner {
    fn new(key: FakeSk, flags: u8, counter: u32) -> Self {
        FakeSkSigner {
            key,
            application: "ssh:sshbreak".into(),
            flags,
            counter,
        }
    }
}

impl signature::Signer<Signature> for FakeSkSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        // What a FIDO key signs: authData (rp id hash ‖ flags ‖ counter) ‖ SHA-256(message).
        let mut signed = Sha256::digest(self.application.as_bytes()).to_vec();
        signed.push(self.flags);
        signed.extend_from_slice(&self.counter.to_be_bytes());
        signed.extend_from_slice(&Sha256::digest(msg));
        match &self.key {
            FakeSk::Ecdsa(k) => {
                let sig: p256::ecdsa::Signature = signature::Signer::sign(k, &signed);
                let (r, s) = sig.split_bytes();
                let body = sshbreak::token::ssh_signature_body(
                    &r.into(),
                    &s.into(),
                    self.flags,
                    self.counter,
                );
                Signature::new(Algorithm::SkEcdsaSha2NistP256, body)
                    .map_err(|_| signature::Error::new())
            }
            FakeSk::Ed25519(k) => {
                let plain: Signature = signature::Signer::try_sign(k, &signed)?;
                let mut body = plain.as_bytes().to_vec();
                body.push(self.flags);
                body.extend_from_slice(&self.counter.to_be_bytes());
                Signature::new(Algorithm::SkEd25519, body).map_err(|_| signature::Error::new())
            }
        }
    }
}

impl From<&FakeSkSigner> for KeyData {
    fn from(s: &FakeSkSigner) -> KeyData {
        match &s.key {
            FakeSk::Ecdsa(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                sshbreak::token::sk_key_data(point.as_bytes(), &s.application).unwrap()
            }
            FakeSk::Ed25519(k) => {
                KeyData::SkEd25519(SkEd25519::new(k.public, s.application.clone()))
            }
        }
    }
}

fn fake_ecdsa(flags: u8, counter: u32) -> FakeSkSigner {
    let key = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    FakeSkSigner::new(FakeSk::Ecdsa(key), flags, counter)
}

fn fake_ed25519(flags: u8, counter: u32) -> FakeSkSigner {
    FakeSkSigner::new(
        FakeSk::Ed25519(Ed25519Keypair::from_seed(&[0x17; 32])),
        flags,
        counter,
    )
}

/// A certificate for the first fixture's user key, valid `after..before`, signed by `signer`.
fn certificate_signed_by<S: ssh_key::SigningKey>(
    signer: &S,
    after: u64,
    before: u64,
) -> Certificate {
    let user = Certificate::from_openssh(FIXTURE_CERTS[0].0).unwrap();
    let mut b =
        ssh_key::certificate::Builder::new([7u8; 32], user.public_key().clone(), after, before)
            .unwrap();
    b.serial(1234).unwrap();
    b.key_id("sk-signed").unwrap();
    b.valid_principal("alice").unwrap();
    b.extension("permit-pty", "").unwrap();
    b.sign(signer).unwrap()
}

fn write_cert(dir: &Path, name: &str, cert: &Certificate) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", cert.to_openssh().unwrap())).unwrap();
    path
}

fn bundle_of(dir: &Path, name: &str, key: KeyData, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let line = PublicKey::new(key, comment).to_openssh().unwrap();
    std::fs::write(&path, format!("# test bundle\n{line}\n")).unwrap();
    path
}

#[test]
fn a_certificate_from_the_soft_token_ca_shows_presence_counter_and_ca_name() {
    let env = common::Env::new();
    env.init_ca();
    let handles = sshbreak::ca::load_handles(&env.home).unwrap();
    let handle = &handles[0];
    let token = sshbreak::token::open(&TokenSpec::Soft(env.token.clone())).unwrap();
    let signer = sshbreak::ca::TokenSigner::new(token.as_ref(), handle, None);
    let now = unix_now();
    let cert = certificate_signed_by(&signer, now - 300, now + 600);
    let counter = signer.last_auth_data().unwrap().counter;
    let path = write_cert(env.dir.path(), "soft-cert.pub", &cert);

    // No --ca: the home's trusted-ca.pub (written by init-ca) is the trust source.
    let out = common::run(env.cmd().arg("inspect").arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = stdout(&out);
    let bundle_line = std::fs::read_to_string(env.bundle()).unwrap();
    let ca_name = PublicKey::from_openssh(bundle_line.trim())
        .unwrap()
        .comment()
        .as_str_lossy()
        .to_string();
    assert!(ca_name.starts_with("sshbreak-ca:primary"), "{ca_name}");
    assert!(report.contains("user presence: yes"), "{report}");
    assert!(report.contains("user verification: no"), "{report}");
    assert!(report.contains(&format!("counter: {counter}")), "{report}");
    assert!(
        report.contains(&format!("\"{ca_name}\" (trusted)")),
        "{report}"
    );
    assert!(report.contains("application ssh:sshbreak"), "{report}");
    assert!(
        report.contains("valid (sk-ecdsa-sha2-nistp256@openssh.com)"),
        "{report}"
    );

    let out = common::run(env.cmd().args(["inspect", "--json"]).arg(&path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = &json_of(&out)[0]["certificate"];
    assert_eq!(c["signature"]["user_presence"], true);
    assert_eq!(c["signature"]["user_verification"], false);
    assert_eq!(c["signature"]["counter"], counter);
    assert_eq!(c["signature"]["flags"], u64::from(FLAG_UP));
    assert_eq!(c["signing_ca"]["trust_name"], ca_name.as_str());
    assert_eq!(c["signing_ca"]["application"], "ssh:sshbreak");
    assert_eq!(
        c["signing_ca"]["fingerprint"],
        handle.fingerprint().as_str()
    );
    assert_eq!(c["key_id"], "sk-signed");
    assert_eq!(c["serial"], 1234);
}

#[test]
fn an_sk_signature_without_user_presence_is_called_out_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let now = unix_now();
    for (name, no_touch, touch_and_pin) in [
        ("ecdsa", fake_ecdsa(0, 9), fake_ecdsa(FLAG_UP | FLAG_UV, 10)),
        (
            "ed25519",
            fake_ed25519(FLAG_UV, 9),
            fake_ed25519(FLAG_UP | FLAG_UV, 10),
        ),
    ] {
        let bundle = bundle_of(
            d,
            &format!("{name}.bundle"),
            KeyData::from(&no_touch),
            "fake sk CA",
        );
        let bad = write_cert(
            d,
            &format!("{name}-no-touch-cert.pub"),
            &certificate_signed_by(&no_touch, now - 60, now + 600),
        );
        let good = write_cert(
            d,
            &format!("{name}-touch-cert.pub"),
            &certificate_signed_by(&touch_and_pin, now - 60, now + 600),
        );

        let out = inspect_cmd(d, &[Path::new("--ca"), &bundle, &bad]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let report = stdout(&out);
        assert!(report.contains("user presence: no"), "{report}");
        assert!(report.contains("counter: 9"), "{report}");
        assert!(
            report.contains("FAILED:           the CA signed without user presence"),
            "{report}"
        );
        let out = inspect_cmd(d, &[Path::new("--json"), Path::new("--ca"), &bundle, &bad]);
        let i = &json_of(&out)[0];
        assert_eq!(i["ok"], false);
        assert_eq!(i["certificate"]["signature"]["verified"], true);
        assert_eq!(i["certificate"]["signature"]["user_presence"], false);

        let out = inspect_cmd(d, &[Path::new("--ca"), &bundle, &good]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        let report = stdout(&out);
        assert!(
            report.contains("user presence: yes, user verification: yes, counter: 10"),
            "{report}"
        );
        assert!(report.contains("\"fake sk CA\" (trusted)"), "{report}");
    }
}

#[test]
fn keys_handles_and_bundles_show_only_public_parts() {
    let env = common::Env::new();
    env.init_ca();
    let d = env.dir.path();
    let handle_path = env.home.join("ca/primary");
    let handle = sshbreak::ca::CaHandle::read(&handle_path).unwrap();
    let user = new_key(d, "plain", "ecdsa");
    // A bundle of two keys: the CA and a plain key, with a comment line in between.
    let two = d.join("two.pub");
    let mut text_two = std::fs::read_to_string(env.bundle()).unwrap();
    text_two += "# another\n";
    text_two += &std::fs::read_to_string(user.with_extension("pub")).unwrap();
    std::fs::write(&two, text_two).unwrap();

    let inputs = [
        handle_path.clone(),
        env.bundle(),
        user.with_extension("pub"),
        user.clone(),
        two.clone(),
    ];
    let mut cmd = env.cmd();
    cmd.arg("inspect").args(&inputs);
    let out = common::run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "{}: security-key handle file (public part only): OK",
            handle_path.display()
        )),
        "{report}"
    );
    assert!(
        report.contains("Application:      ssh:sshbreak"),
        "{report}"
    );
    assert!(
        report.contains("Handle flags:     0x21 (touch required, resident)"),
        "{report}"
    );
    assert!(report.contains(&handle.fingerprint()), "{report}");
    assert!(
        report.contains(&keygen_fingerprint(&user.with_extension("pub"))),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "{}: private-key file (public part only): OK",
            user.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!("{}: bundle of 2 keys: OK", two.display())),
        "{report}"
    );

    // Nothing of the handle beyond the public key: not the credential id in any encoding, and
    // not the file's base64 body.
    let id = &handle.credential_id;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    for needle in [hex.clone(), hex.to_uppercase(), Base64::encode_string(id)] {
        assert!(!report.contains(&needle), "key handle leaked: {needle}");
    }
    let handle_file = std::fs::read_to_string(&handle_path).unwrap();
    let body: String = handle_file
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for chunk in body.as_bytes().chunks(24).skip(1) {
        let chunk = std::str::from_utf8(chunk).unwrap();
        assert!(
            !report.contains(chunk),
            "handle file content leaked: {chunk}"
        );
    }

    let mut cmd = env.cmd();
    cmd.args(["inspect", "--json"]).args(&inputs);
    let out = common::run(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let items = json_of(&out);
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "handle",
            "public_key",
            "public_key",
            "private_key",
            "bundle"
        ]
    );
    let h = &items[0]["keys"][0];
    assert_eq!(h["type"], "sk-ecdsa-sha2-nistp256@openssh.com");
    assert_eq!(h["application"], "ssh:sshbreak");
    assert_eq!(h["fingerprint"], handle.fingerprint().as_str());
    assert_eq!(h["handle_flags"], 0x21);
    assert_eq!(h["encrypted"], false);
    assert_eq!(h["trusted"], true);
    assert_eq!(
        items[1]["keys"][0]["fingerprint"],
        handle.fingerprint().as_str()
    );
    let b = &items[4]["keys"];
    assert_eq!(
        (b[0]["line"].as_u64(), b[1]["line"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(
        (&b[0]["trusted"], &b[1]["trusted"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    for i in &items {
        let raw = serde_json::to_string(i).unwrap();
        assert!(
            !raw.contains(&hex) && !raw.contains(&Base64::encode_string(id)),
            "{raw}"
        );
    }
}

/// One way to damage a certificate blob.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    Truncate {
        keep: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// Overwrite four bytes with a big-endian u32: hits length fields with hostile values.
    SetU32 {
        at: usize,
        value: u32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile = prop_oneof![
        Just(0xFFFF_FFFFu32),
        Just(0x7FFF_FFFF),
        Just(0x8000_0000),
        Just(0),
        Just(1),
        0u32..4096,
        any::<u32>(),
    ];
    // Bit flips mostly keep the structure decodable, so they are what reaches the signature and
    // validity checks; the others mostly test the decoder.
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        2 => (any::<usize>(), hostile).prop_map(|(at, value)| Mutation::SetU32 { at, value }),
    ]
}

fn apply(blob: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = blob.to_vec();
    for m in mutations {
        let n = b.len().max(1);
        match m {
            Mutation::FlipBit { at, bit } => {
                if let Some(x) = b.get_mut(at % n) {
                    *x ^= 1 << bit;
                }
            }
            Mutation::Truncate { keep } => b.truncate(keep % n),
            Mutation::Insert { at, bytes } => {
                let at = at % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::SetU32 { at, value } => {
                // Length fields sit at 4-byte-unaligned offsets too; any offset will do.
                let at = at % n;
                for (i, byte) in value.to_be_bytes().into_iter().enumerate() {
                    if let Some(x) = b.get_mut(at + i) {
                        *x = byte;
                    }
                }
            }
        }
    }
    b
}

/// The valid certificates the corruption test starts from: the ssh-keygen fixtures and two
/// security-key-signed ones (deterministic: fixed keys, nonce and RFC 6979 / Ed25519 signatures),
/// each with its CA as the trust source.
fn corpus() -> Vec<(Vec<u8>, String, Vec<PublicKey>)> {
    let mut corpus: Vec<(Vec<u8>, String, Vec<PublicKey>)> = FIXTURE_CERTS
        .iter()
        .map(|(cert, ca)| {
            let c = Certificate::from_openssh(cert).unwrap();
            let ty = cert.split_whitespace().next().unwrap().to_string();
            (
                c.to_bytes().unwrap(),
                ty,
                vec![PublicKey::from_openssh(ca).unwrap()],
            )
        })
        .collect();
    for signer in [fake_ecdsa(FLAG_UP, 5), fake_ed25519(FLAG_UP, 6)] {
        let c = certificate_signed_by(&signer, NOW - 600, NOW + 600);
        let ty = c.algorithm().to_certificate_type();
        corpus.push((
            c.to_bytes().unwrap(),
            ty,
            vec![PublicKey::new(KeyData::from(&signer), "sk")],
        ));
    }
    corpus
}

#[test]
fn corrupted_certificates_are_reported_never_accepted_and_never_panic() {
    let corpus = corpus();
    for (blob, ty, trusted) in &corpus {
        let i = inspect("seed", blob, Some(trusted), NOW);
        assert!(i.ok, "seed {ty} must be good: {i:?}");
    }
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: CORRUPTION_CASES,
            failure_persistence: None,
            ..Config::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (0..corpus.len(), proptest::collection::vec(mutation(), 1..4));
    // How many damaged inputs still decoded as certificates, i.e. reached the signature check:
    // without enough of those the test would only exercise the decoder.
    let decoded = std::cell::Cell::new(0u32);
    runner
        .run(&strategy, |(which, mutations)| {
            let (blob, ty, trusted) = &corpus[which];
            let damaged = apply(blob, &mutations);
            // Both forms: the raw blob and the one-line text form around it.
            let line = format!("{ty} {} comment\n", Base64::encode_string(&damaged));
            for input in [damaged.as_slice(), line.as_bytes()] {
                let i = inspect("damaged", input, Some(trusted), NOW);
                if damaged != *blob {
                    prop_assert!(!i.ok, "a damaged certificate passed: {mutations:?}\n{i:?}");
                }
                prop_assert_eq!(i.ok, i.problems.is_empty());
                if i.kind == Kind::Certificate {
                    decoded.set(decoded.get() + 1);
                }
                if i.kind == Kind::Invalid {
                    prop_assert!(i.error.is_some());
                    prop_assert_eq!(i.to_text().lines().count(), 1);
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "{} of {} damaged inputs decoded as certificates",
        decoded.get(),
        2 * CORRUPTION_CASES
    );
    assert!(
        decoded.get() > CORRUPTION_CASES / 5,
        "too few damaged inputs reached the signature check"
    );
}

#[test]
fn the_binary_reports_garbage_as_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, ca) = FIXTURE_CERTS[0];
    let ty = cert.split_whitespace().next().unwrap();
    let blob = Base64::decode_vec(cert.split_whitespace().nth(1).unwrap()).unwrap();
    let bundle = d.join("ca.pub");
    std::fs::write(&bundle, ca).unwrap();
    let line = |b: &[u8]| format!("{ty} {} x\n", Base64::encode_string(b)).into_bytes();

    let mut huge_len = blob.clone();
    huge_len[..4].copy_from_slice(&[0xff; 4]);
    let mut huge_inner = blob.clone();
    let at = 4 + ty.len();
    huge_inner[at..at + 4].copy_from_slice(&[0xff; 4]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated-text", line(&blob[..blob.len() / 2])),
        ("truncated-binary", blob[..blob.len() - 3].to_vec()),
        ("huge-type-length", huge_len),
        ("huge-nonce-length", line(&huge_inner)),
        ("cut-base64", cert.as_bytes()[..cert.len() / 3].to_vec()),
        (
            "non-utf8",
            b"ssh-ed25519-cert-v01@openssh.com \xff\xfe\xfd\n".to_vec(),
        ),
        (
            "random-binary",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("empty", Vec::new()),
        (
            "wrong-type",
            format!("ssh-rsa-cert-v01@openssh.com {}", &cert[ty.len() + 1..]).into_bytes(),
        ),
    ];
    for (name, data) in &cases {
        let path = d.join(name);
        std::fs::write(&path, data).unwrap();
        let out = inspect_cmd(d, &[Path::new("--ca"), &bundle, &path]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        let report = stdout(&out);
        assert_eq!(report.lines().count(), 1, "{name}: {report}");
        assert!(
            report.starts_with(&format!("{}: invalid: ", path.display())),
            "{name}: {report}"
        );
        assert!(out.stderr.is_empty(), "{name}: {}", text(&out));
    }
    // All of them at once: still one line each, exit 1.
    let paths: Vec<PathBuf> = cases.iter().map(|(n, _)| d.join(n)).collect();
    let mut cmd = sshbreak(d);
    cmd.args(["inspect", "--json"]).args(&paths);
    let out = common::run(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let items = json_of(&out);
    assert_eq!(items.len(), cases.len());
    let errors: BTreeMap<String, bool> = items
        .iter()
        .map(|i| {
            (
                i["input"].as_str().unwrap().to_string(),
                i["kind"] == "invalid" && i["error"].is_string(),
            )
        })
        .collect();
    assert!(errors.values().all(|e| *e), "{errors:?}");
}

#[test]
fn inputs_over_1_mib_are_refused_as_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let big = vec![b'A'; (1 << 20) + 1];
    let path = d.join("big");
    std::fs::write(&path, &big).unwrap();
    let out = inspect_cmd(d, &[&path]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than 1 MiB"),
        "{}",
        text(&out)
    );

    let mut child = sshbreak(d)
        .args(["inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The command stops reading after 1 MiB + 1 byte; a closed pipe after that is fine.
    let _ = stdin.write_all(&big).and_then(|()| stdin.write_all(&big));
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input is larger than 1 MiB"));
}
