//! `sshbreak issue` against the real OpenSSH: certificates log in to a real sshd on 127.0.0.1,
//! ssh-keygen reads them, and every refusal leaves nothing behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, Sshd, run, text, whoami};
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey};
use sshbreak::ca::{self, TokenSigner};
use sshbreak::policy::{self, CertRequest, Validity};
use sshbreak::token::{self, TokenSpec};

const HOUR: u64 = 3600;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `sshbreak issue -n PRINCIPALS -o DIR/NAME [extra…]`; returns the key path.
fn issue(env: &Env, principals: &str, name: &str, extra: &[&str]) -> PathBuf {
    let key = env.dir.path().join(name);
    let out = env
        .cmd()
        .args(["issue", "-n", principals, "-o"])
        .arg(&key)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "issue: {}", text(&out));
    key
}

fn cert_of(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}-cert.pub", key.display()))
}

/// A certificate from the env's soft-token CA with a validity `issue` would refuse to make.
fn sign_with_window(env: &Env, principal: &str, validity: Validity, name: &str) -> PathBuf {
    let handles = ca::load_handles(&env.home).unwrap();
    let tok = token::open(&TokenSpec::Soft(env.token.clone())).unwrap();
    let signer = TokenSigner::new(tok.as_ref(), &handles[0], None);
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let key = PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap();
    let req = CertRequest {
        principals: vec![principal.to_string()],
        validity,
        key_id: format!("test:{name}"),
        serial: 77,
        options: vec![],
    };
    let cert = policy::builder(&req, key.public_key().key_data().clone(), [9; 32])
        .unwrap()
        .sign(&signer)
        .unwrap();
    let path = env.dir.path().join(name);
    fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(cert_of(&path), cert.to_openssh().unwrap() + "\n").unwrap();
    path
}

fn assert_login(sshd: &Sshd, key: &Path, expect_ok: bool, what: &str) {
    let user = whoami();
    let out = sshd.ssh(&user, key, &cert_of(key), "whoami");
    if expect_ok {
        assert!(
            out.status.success(),
            "{what} should log in: {}\n{}",
            text(&out),
            sshd.log_text()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), user);
    } else {
        // Refused by sshd's authentication, not failing for some other reason.
        assert_eq!(
            out.status.code(),
            Some(255),
            "{what} must be refused: {}",
            text(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Permission denied"), "{what}: {err}");
    }
}

#[test]
fn an_issued_certificate_logs_in_and_sshd_refuses_the_bad_ones() {
    let env = Env::new();
    env.init_ca();
    let user = whoami();
    let sshd = Sshd::start(Some(&env.bundle()));

    let good = issue(&env, &user, "good", &[]);
    assert_login(&sshd, &good, true, "a fresh certificate");
    assert!(
        sshd.log_text().contains("sshbreak:"),
        "sshd logs the key id"
    );
    let ecdsa = issue(&env, &user, "good-ecdsa", &["-t", "ecdsa"]);
    assert_login(&sshd, &ecdsa, true, "a certificate on an ECDSA key");

    let t = now();
    let expired = sign_with_window(
        &env,
        &user,
        Validity {
            after: t - 2 * HOUR,
            before: t - HOUR,
        },
        "expired",
    );
    assert_login(&sshd, &expired, false, "an expired certificate");
    let future = sign_with_window(
        &env,
        &user,
        Validity {
            after: t + HOUR,
            before: t + 2 * HOUR,
        },
        "future",
    );
    assert_login(&sshd, &future, false, "a not-yet-valid certificate");

    let other_principal = issue(&env, "somebody-else", "other-principal", &[]);
    assert_login(
        &sshd,
        &other_principal,
        false,
        "a certificate for another principal",
    );

    let other_env = Env::new();
    other_env.init_ca();
    let other_ca = issue(&other_env, &user, "other-ca", &[]);
    assert_login(&sshd, &other_ca, false, "a certificate from another CA");

    // Flip one bit inside the signed body (the key id) of a good certificate.
    let line = fs::read_to_string(cert_of(&good)).unwrap();
    let mut cert = Certificate::from_openssh(&line).unwrap();
    let mut blob = cert.to_bytes().unwrap();
    let pos = blob.windows(9).position(|w| w == b"sshbreak:").unwrap();
    blob[pos] ^= 0x01;
    cert = Certificate::from_bytes(&blob).unwrap();
    let flipped = env.dir.path().join("flipped");
    fs::copy(&good, &flipped).unwrap();
    fs::write(cert_of(&flipped), cert.to_openssh().unwrap() + "\n").unwrap();
    assert_login(&sshd, &flipped, false, "a certificate with a flipped bit");
}

/// The value after `label:` in `ssh-keygen -L` output.
fn field<'a>(listing: &'a str, label: &str) -> &'a str {
    listing
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label} in {listing}"))
        .trim()
}

#[test]
fn ssh_keygen_agrees_on_serial_key_id_principals_and_validity() {
    let env = Env::new();
    env.init_ca();
    let key = env.dir.path().join("k");
    let out = env
        .cmd()
        .args([
            "issue",
            "-n",
            "ubuntu,carl",
            "-V",
            "-1m:+20m",
            "--reason",
            "db down",
            "-O",
            "force-command=/bin/true",
            "--json",
            "-o",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let listing = run(Command::new("ssh-keygen")
        .env("TZ", "UTC")
        .arg("-L")
        .arg("-f")
        .arg(cert_of(&key)));
    assert!(listing.status.success(), "{}", text(&listing));
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(field(&listing, "Serial:"), json["serial"].to_string());
    assert_eq!(
        field(&listing, "Key ID:"),
        format!("\"{}\"", json["key_id"].as_str().unwrap())
    );
    assert!(json["key_id"].as_str().unwrap().ends_with(":db down"));
    let principals: Vec<&str> = listing
        .lines()
        .skip_while(|l| !l.contains("Principals:"))
        .skip(1)
        .take_while(|l| !l.contains("Critical Options:"))
        .map(str::trim)
        .collect();
    assert_eq!(principals, ["ubuntu", "carl"]);
    let after = json["valid_after"].as_str().unwrap().trim_end_matches('Z');
    let before = json["valid_before"].as_str().unwrap().trim_end_matches('Z');
    assert_eq!(
        field(&listing, "Valid:"),
        format!("from {after} to {before}")
    );
    assert_eq!(
        json["valid_before_unix"].as_u64().unwrap() - json["valid_after_unix"].as_u64().unwrap(),
        21 * 60
    );
    assert!(listing.contains("force-command /bin/true"), "{listing}");
    assert!(listing.contains("(using sk-ecdsa-sha2-nistp256@openssh.com)"));
}

#[test]
fn the_private_key_is_0600_and_pubkey_mode_writes_only_a_certificate() {
    let env = Env::new();
    env.init_ca();
    let key = issue(&env, "ubuntu", "k", &[]);
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(cert_of(&key)).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // A colleague's key: only `<key>-cert.pub` is written next to it.
    let colleague = env.dir.path().join("colleague");
    common::keygen(&colleague);
    let out = env
        .cmd()
        .args(["issue", "-n", "ubuntu", "--pubkey"])
        .arg(format!("{}.pub", colleague.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        cert_of(&colleague).display().to_string()
    );
    let listing = run(Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(cert_of(&colleague)));
    assert!(listing.status.success());
    // Default location: a private folder under the home, and the audit log grew by one line each.
    let out = env.run(&["issue", "-n", "ubuntu"]);
    assert!(out.status.success(), "{}", text(&out));
    let certs = env.home.join("certs");
    assert_eq!(
        fs::metadata(&certs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(fs::read_dir(&certs).unwrap().count(), 3);
    let log = fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert_eq!(log.lines().count(), 3);
    let verify = env.run(&["audit", "--verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn refusals_exit_non_zero_and_leave_no_file() {
    let env = Env::new();
    env.init_ca();
    let cases: &[(&[&str], &str)] = &[
        (&["issue", "-n", ""], "principal"),
        (&["issue", "-n", "ubuntu,bad name"], "whitespace"),
        (&["issue", "-n", "a,,b"], "empty"),
        (&["issue", "-n", "ubuntu", "-V", "25h"], "24h"),
        (
            &["issue", "-n", "ubuntu", "-V", "forever"],
            "--allow-long-validity",
        ),
        (
            &["issue", "-n", "ubuntu", "-O", "source-address=example.com"],
            "source-address",
        ),
        (&["issue", "-n", "ubuntu", "-O", "bogus"], "bogus"),
    ];
    for (i, (args, why)) in cases.iter().enumerate() {
        let key = env.dir.path().join(format!("refused-{i}"));
        let out = env.cmd().args(*args).arg("-o").arg(&key).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?} should mention {why}: {err}");
        assert!(
            !key.exists() && !cert_of(&key).exists(),
            "{args:?} left a file"
        );
    }
    // No -n at all is a usage error from the parser.
    let out = env.run(&["issue"]);
    assert_eq!(out.status.code(), Some(2));

    // An existing output file is not overwritten, and nothing else is written next to it.
    let existing = env.dir.path().join("existing");
    fs::write(&existing, "keep me").unwrap();
    let out = env
        .cmd()
        .args(["issue", "-n", "ubuntu", "-o"])
        .arg(&existing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(fs::read_to_string(&existing).unwrap(), "keep me");
    assert!(!cert_of(&existing).exists());

    // A signature without user presence is refused: no certificate, no key, no audit entry.
    let key = env.dir.path().join("no-touch");
    let out = env
        .cmd()
        .env("SSHBREAK_SOFT_TOKEN_NO_TOUCH", "1")
        .args(["issue", "-n", "ubuntu", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without user presence"));
    assert!(!key.exists() && !cert_of(&key).exists());
    assert!(!env.home.join("audit.log").exists());
}

#[test]
fn without_a_ca_issue_says_how_to_make_one() {
    let env = Env::new();
    let out = env.run(&["issue", "-n", "ubuntu"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("init-ca"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn a_backup_ca_signs_when_only_it_is_plugged_in() {
    let env = Env::new();
    env.init_ca();
    let backup = env.dir.path().join("backup.json");
    env.set_pin(&backup);
    let out = env
        .cmd_with_token(&backup)
        .args(["init-ca", "--backup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let key = env.dir.path().join("via-backup");
    let out = env
        .cmd_with_token(&backup)
        .args(["issue", "-n", &whoami(), "--json", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ca"], "backup-1");
    let sshd = Sshd::start(Some(&env.bundle()));
    assert_login(&sshd, &key, true, "a certificate from the backup CA");
}
