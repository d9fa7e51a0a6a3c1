//! `sshbreak demo` end to end: it logs in, stops its sshd, removes its files, and leaves the user's
//! home alone.

mod common;

use std::net::TcpStream;
use std::process::Command;

use common::{text, whoami};

#[test]
fn the_demo_logs_in_and_leaves_nothing_behind() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sshbreak"))
        .arg("demo")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("USER", whoami())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Logged in as `{}`", whoami())),
        "{stdout}"
    );
    assert!(
        stdout.contains("Reusing"),
        "connect reuses the issued certificate: {stdout}"
    );
    assert!(
        stdout.contains("# by hand: ssh-keygen -s"),
        "it teaches the manual procedure"
    );

    // The temporary directory is gone and the sshd no longer listens.
    let dir = stdout
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_string();
    assert!(dir.contains("sshbreak-demo-"), "{dir}");
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} was left behind"
    );
    let port: u16 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("| listening on 127.0.0.1:"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "sshd still runs"
    );

    // Neither ~/.sshbreak nor ~/.ssh was created.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);
}
