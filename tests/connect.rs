//! `sshbreak connect` against a real sshd on 127.0.0.1: issue, reuse, exit status, and no option
//! injection through the destination.

mod common;

use std::fs;

use common::{Env, Sshd, text, whoami};

fn connect(env: &Env, sshd: &Sshd, dest: &str, command: &[&str]) -> std::process::Output {
    env.cmd()
        .args(["connect", "-p", &sshd.port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR"])
        .arg(dest)
        .args(command)
        .output()
        .unwrap()
}

fn count(dir: &std::path::Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn connect_issues_once_then_reuses_and_passes_the_exit_status_through() {
    let env = Env::new();
    env.init_ca();
    let sshd = Sshd::start(Some(&env.bundle()));
    let user = whoami();
    let dest = format!("{user}@127.0.0.1");
    let audit = env.home.join("audit.log");
    let certs = env.home.join("certs");

    let first = connect(&env, &sshd, &dest, &["whoami"]);
    assert!(
        first.status.success(),
        "{}\n{}",
        text(&first),
        sshd.log_text()
    );
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), user);
    assert_eq!(count(&certs), 3, "key, public key and certificate");
    assert_eq!(fs::read_to_string(&audit).unwrap().lines().count(), 1);

    // Second run: the certificate is reused — no new files, no new audit entry, no touch.
    let token_before = fs::read(&env.token).unwrap();
    let second = connect(&env, &sshd, &dest, &["whoami"]);
    assert!(second.status.success(), "{}", text(&second));
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), user);
    assert!(String::from_utf8_lossy(&second.stderr).contains("Reusing"));
    assert_eq!(count(&certs), 3);
    assert_eq!(fs::read_to_string(&audit).unwrap().lines().count(), 1);
    assert_eq!(
        fs::read(&env.token).unwrap(),
        token_before,
        "the key was not used"
    );

    // The remote command's exit status is sshbreak's.
    let seven = connect(&env, &sshd, &dest, &["exit 7"]);
    assert_eq!(seven.status.code(), Some(7), "{}", text(&seven));

    // -n for another principal issues a new certificate, which this host refuses for our user.
    let other = env
        .cmd()
        .args([
            "connect",
            "-F",
            "none",
            "-n",
            "nobody-here",
            "-p",
            &sshd.port.to_string(),
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
        ])
        .arg(&dest)
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(255), "{}", text(&other));
    assert_eq!(count(&certs), 6);
}

#[test]
fn a_destination_that_looks_like_an_option_never_reaches_ssh() {
    let env = Env::new();
    env.init_ca();
    let marker = env.dir.path().join("pwned");
    let evil = format!("-oProxyCommand=touch {}", marker.display());
    for argv in [
        vec!["connect", evil.as_str()],
        vec!["connect", "--", evil.as_str()],
        vec!["connect", "-n", "root", evil.as_str(), "id"],
    ] {
        let out = env.cmd().args(&argv).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", text(&out));
        assert!(!marker.exists(), "{argv:?} ran the ProxyCommand");
    }
    // Nothing was issued either.
    assert!(!env.home.join("certs").exists());
}

#[test]
fn a_destination_without_a_user_needs_n() {
    let env = Env::new();
    let out = env.run(&["connect", "127.0.0.1", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-n"));
}

#[test]
fn ssh_missing_from_path_is_a_clear_error() {
    let env = Env::new();
    env.init_ca();
    let out = env
        .cmd()
        .env("PATH", env.dir.path())
        .args(["connect", "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ssh was not found"));
}

#[test]
fn a_restricted_certificate_or_a_swapped_key_is_not_reused() {
    let env = Env::new();
    env.init_ca();
    let sshd = Sshd::start(Some(&env.bundle()));
    let user = whoami();
    let dest = format!("{user}@127.0.0.1");
    let restricted = env.run(&["issue", "-n", &user, "-O", "no-pty"]);
    assert!(restricted.status.success(), "{}", text(&restricted));
    let out = connect(&env, &sshd, &dest, &["true"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Reusing"),
        "{}",
        text(&out)
    );
    let audit = env.home.join("audit.log");
    assert_eq!(fs::read_to_string(&audit).unwrap().lines().count(), 2);

    // Replace the reusable certificate's key with another key: it must not be reused either.
    let certs = env.home.join("certs");
    let newest = fs::read_dir(&certs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".pub"))
        .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    fs::remove_file(&newest).unwrap();
    common::keygen(&newest);
    let out = connect(&env, &sshd, &dest, &["true"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Reusing"));
    assert_eq!(fs::read_to_string(&audit).unwrap().lines().count(), 3);
}
