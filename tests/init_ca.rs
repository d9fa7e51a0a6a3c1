//! `sshbreak init-ca` on the software token, checked with the real ssh-keygen.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{Env, run, text};

fn keygen(args: &[&str], file: &std::path::Path) -> String {
    let out = run(Command::new("ssh-keygen").args(args).arg(file));
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The key part ("TYPE BASE64") of an OpenSSH public-key line.
fn key_part(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_handle_is_an_openssh_key_file_whose_public_key_is_in_the_bundle() {
    let env = Env::new();
    let out = env.init_ca();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fingerprint: SHA256:"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("enroll-host"));

    let handle = env.home.join("ca/primary");
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&handle), 0o600);
    assert_eq!(mode(&env.home), 0o700);

    let from_handle = keygen(&["-y", "-f"], &handle);
    assert!(from_handle.starts_with("sk-ecdsa-sha2-nistp256@openssh.com "));
    let bundle = fs::read_to_string(env.bundle()).unwrap();
    assert_eq!(bundle.lines().count(), 1);
    assert_eq!(
        key_part(&from_handle),
        key_part(bundle.lines().next().unwrap())
    );
    // Each bundle line says which key the CA lives on.
    assert!(
        bundle.contains("sshbreak-ca:primary on soft token"),
        "{bundle}"
    );

    let listed = keygen(&["-l", "-f"], &env.bundle());
    assert!(listed.contains("(ECDSA-SK)"), "{listed}");
    assert!(stdout.contains(listed.split_whitespace().nth(1).unwrap()));
}

#[test]
fn a_second_init_ca_on_the_same_key_changes_nothing() {
    let env = Env::new();
    env.init_ca();
    let token_before = fs::read(&env.token).unwrap();
    let bundle_before = fs::read(env.bundle()).unwrap();

    // Same home: refused before the key is asked.
    let again = env.cmd().arg("init-ca").output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    // Another home, same key: the key itself is checked (no touch) and the CA is not clobbered.
    let other_home = env.dir.path().join("other-home");
    let out = env
        .cmd()
        .env("SSHBREAK_HOME", &other_home)
        .arg("init-ca")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds an sshbreak CA"), "{err}");
    assert!(err.contains("--recover"), "{err}");
    assert!(!other_home.join("ca/primary").exists());

    assert_eq!(fs::read(&env.token).unwrap(), token_before);
    assert_eq!(fs::read(env.bundle()).unwrap(), bundle_before);
}

#[test]
fn force_replaces_the_credential_and_its_bundle_line() {
    let env = Env::new();
    env.init_ca();
    let old = fs::read_to_string(env.bundle()).unwrap();
    let out = env.run(&["init-ca", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let new = fs::read_to_string(env.bundle()).unwrap();
    assert_eq!(
        new.lines().count(),
        1,
        "the replaced CA must leave the bundle"
    );
    assert_ne!(key_part(&old), key_part(&new));
    assert_eq!(
        key_part(&keygen(&["-y", "-f"], &env.home.join("ca/primary"))),
        key_part(&new)
    );
}

#[test]
fn a_backup_key_joins_the_bundle() {
    let env = Env::new();
    env.init_ca();
    let backup_token = env.dir.path().join("backup.json");
    env.set_pin(&backup_token);
    let out = env
        .cmd_with_token(&backup_token)
        .args(["init-ca", "--backup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let bundle = fs::read_to_string(env.bundle()).unwrap();
    let keys: Vec<_> = bundle.lines().map(key_part).collect();
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
    assert!(bundle.contains("sshbreak-ca:backup-1"));
    assert_eq!(
        key_part(&keygen(&["-y", "-f"], &env.home.join("ca/backup-1"))),
        keys[1]
    );
    let listed = keygen(&["-l", "-f"], &env.bundle());
    assert_eq!(listed.lines().count(), 2);
}

#[test]
fn backup_without_a_primary_is_refused() {
    let env = Env::new();
    let out = env.run(&["init-ca", "--backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!env.home.join("ca").exists());
}

#[test]
fn recover_restores_a_deleted_handle_from_the_key() {
    let env = Env::new();
    env.init_ca();
    let handle = env.home.join("ca/primary");
    let original = fs::read(&handle).unwrap();
    let bundle = fs::read(env.bundle()).unwrap();
    fs::remove_file(&handle).unwrap();
    fs::remove_file(env.bundle()).unwrap();

    let out = env.run(&["init-ca", "--recover"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Recovered"));
    assert_eq!(
        key_part(&keygen(&["-y", "-f"], &handle)),
        key_part(&String::from_utf8(bundle).unwrap())
    );
    assert_eq!(
        fs::metadata(&handle).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Same credential id, so the recovered handle is the same file modulo the comment's date.
    let recovered = fs::read(&handle).unwrap();
    assert_eq!(recovered.len(), original.len());
    assert_eq!(fs::read_to_string(env.bundle()).unwrap().lines().count(), 1);
}

#[test]
fn recover_on_an_empty_key_says_so() {
    let env = Env::new();
    let out = env.run(&["init-ca", "--recover"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no sshbreak CA"));
}

#[test]
fn a_wrong_pin_costs_one_retry_and_says_how_many_are_left() {
    let env = Env::new();
    let wrong = env.dir.path().join("wrong-pin");
    fs::write(&wrong, "999999\n").unwrap();
    let out = env
        .cmd()
        .env("SSHBREAK_PIN_FILE", &wrong)
        .arg("init-ca")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong PIN (7 tries left)"), "{err}");
    // A PIN the key would reject anyway never reaches it.
    fs::write(&wrong, "12\n").unwrap();
    let out = env
        .cmd()
        .env("SSHBREAK_PIN_FILE", &wrong)
        .arg("init-ca")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 4"));
    let info = env.run(&["token", "list", "--json"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"pin_retries\": 7"));
}

#[test]
fn bare_ssh_application_is_a_usage_error() {
    let env = Env::new();
    let out = env.run(&["init-ca", "--application", "ssh:"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn without_a_security_key_the_hid_token_fails_in_one_line() {
    let env = Env::new();
    let out = env.run(&["--token", "hid", "init-ca"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("sshbreak: ") && (first.contains("no FIDO") || first.contains("HID")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unimplemented_or_bad_usage_exits_2_without_a_panic() {
    let env = Env::new();
    let out = env.run(&["init-ca", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["--token", "usb", "token", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn a_verify_required_ca_signs_only_with_the_pin_and_recovery_keeps_the_flag() {
    let env = Env::new();
    let out = env.run(&["init-ca", "--verify-required"]);
    assert!(out.status.success(), "{}", text(&out));
    let handle = env.home.join("ca/primary");
    assert!(
        sshbreak::ca::CaHandle::read(&handle)
            .unwrap()
            .verify_required()
    );

    // With the PIN (from SSHBREAK_PIN_FILE) the signature is user-verified.
    let key = env.dir.path().join("k");
    let out = env
        .cmd()
        .args(["issue", "-n", "ubuntu", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = env
        .cmd()
        .args(["inspect", "--json"])
        .arg(format!("{}-cert.pub", key.display()))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        json[0]["certificate"]["signature"]["user_verification"],
        true
    );

    // The key itself refuses to use the credential without the PIN (credProtect 3): a stolen
    // key plus the handle file cannot sign.
    let tok = sshbreak::token::open(&sshbreak::token::TokenSpec::Soft(env.token.clone())).unwrap();
    let h = sshbreak::ca::CaHandle::read(&handle).unwrap();
    assert_eq!(
        tok.sign(&h.application, &[h.credential_id.as_slice()], b"m", None),
        Err(sshbreak::token::TokenError::NoCredentials)
    );

    // Recovery reads the protection level from the key, not from the command line.
    fs::remove_file(&handle).unwrap();
    let out = env.run(&["init-ca", "--recover"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        sshbreak::ca::CaHandle::read(&handle)
            .unwrap()
            .verify_required()
    );
}

#[test]
fn a_backup_named_like_an_existing_ca_is_refused_before_the_key_is_touched() {
    let env = Env::new();
    env.init_ca();
    let backup = env.dir.path().join("backup.json");
    env.set_pin(&backup);
    let before = fs::read(&backup).unwrap();
    let out = env
        .cmd_with_token(&backup)
        .args(["init-ca", "--backup", "--name", "primary"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        fs::read(&backup).unwrap(),
        before,
        "no credential was created"
    );
    // A stray file among the handles does not break issuing.
    fs::write(env.home.join("ca/README"), "notes\n").unwrap();
    let out = env
        .cmd()
        .args(["issue", "-n", "ubuntu", "-o"])
        .arg(env.dir.path().join("k"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipping"));
}
