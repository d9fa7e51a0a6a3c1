//! `sshbreak drill` against real sshd on 127.0.0.1: one that trusts the CA, one that does not,
//! and a port nobody listens on; the record of good drills and `--status`; and destinations that
//! try to smuggle options into ssh. Every drill here runs with `-F none` (or a config file of the
//! test's own): ssh finds ~/.ssh/config through the passwd entry, not $HOME, so without it a
//! developer's own ssh config would take part in the tests.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{Env, Sshd, free_port, text, whoami};

const DAY: u64 = 86_400;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `sshbreak drill` with the options a throwaway sshd needs (its host key is unknown), and no
/// ssh config but these options.
fn drill(env: &Env, args: &[&str]) -> Output {
    env.cmd()
        .arg("drill")
        .args([
            "-F",
            "none",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "--timeout",
            "5",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn status(env: &Env, args: &[&str]) -> Output {
    env.cmd()
        .args(["drill", "--status"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn drill_reports_pass_refused_and_unreachable_and_records_only_the_pass() {
    let env = Env::new();
    env.init_ca();
    let trusting = Sshd::start(Some(&env.bundle()));
    let untrusting = Sshd::start(None);
    let closed = free_port();
    let user = whoami();
    let good = format!("ssh://{user}@127.0.0.1:{}", trusting.port);
    let bad = format!("ssh://{user}@127.0.0.1:{}", untrusting.port);
    let gone = format!("ssh://{user}@127.0.0.1:{closed}");

    let out = drill(&env, &[&good, &bad, &gone]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        text(&out),
        trusting.log_text()
    );
    let report = stdout(&out);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 4, "three hosts and a summary: {}", text(&out));
    // One line per host, in input order, outcome first.
    let expect = [("pass", &good), ("refused", &bad), ("unreachable", &gone)];
    for (line, (outcome, dest)) in lines.iter().zip(expect) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[0], outcome, "{line}\n{}", text(&out));
        assert_eq!(fields[1], dest.as_str(), "{line}");
        assert!(fields[2].ends_with('s'), "time taken: {line}");
    }
    assert!(lines[1].contains("Permission denied"), "{}", lines[1]);
    assert!(lines[2].contains("Connection refused"), "{}", lines[2]);
    assert_eq!(lines[3], "1 of 3 hosts passed the drill");

    // The host logged the drill certificate by its key id.
    let log = trusting.log_text();
    assert!(
        log.contains("Accepted publickey") && log.contains(":drill"),
        "{log}"
    );

    // One certificate, in the audit log, and nothing left in the home's certs folder.
    let audit = fs::read_to_string(env.home.join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(audit.contains("\"reason\":\"drill\""), "{audit}");
    let certs = env.home.join("certs");
    assert_eq!(fs::read_dir(&certs).map(|d| d.count()).unwrap_or(0), 0);

    // Only the pass is recorded, privately.
    let record = env.home.join("drills.json");
    assert_eq!(
        fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let st = status(&env, &[]);
    assert_eq!(st.status.code(), Some(0), "{}", text(&st));
    let listing = stdout(&st);
    assert!(listing.contains(&good), "{listing}");
    assert!(
        !listing.contains(&bad) && !listing.contains(&gone),
        "{listing}"
    );
    assert!(!listing.contains("STALE"), "{listing}");
    assert!(listing.contains("all 1 host drilled"), "{listing}");
}

#[test]
fn a_drill_where_every_host_passes_exits_zero() {
    let env = Env::new();
    env.init_ca();
    let sshd = Sshd::start(Some(&env.bundle()));
    let dest = format!("{}@127.0.0.1", whoami());
    let port = sshd.port.to_string();
    let out = drill(&env, &["-p", &port, "-j", "1", &dest]);
    assert!(out.status.success(), "{}\n{}", text(&out), sshd.log_text());
    assert!(stdout(&out).starts_with("pass "), "{}", text(&out));
}

#[test]
fn status_flags_old_drills_as_stale_and_exits_one() {
    let env = Env::new();
    fs::create_dir_all(&env.home).unwrap();
    let old = now() - 40 * DAY;
    let recent = now() - DAY;
    fs::write(
        env.home.join("drills.json"),
        format!("{{\"root@old.example\": {old}, \"root@new.example\": {recent}}}\n"),
    )
    .unwrap();

    let st = status(&env, &[]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    let listing = stdout(&st);
    let line_of = |host: &str| {
        listing
            .lines()
            .find(|l| l.contains(host))
            .unwrap_or_else(|| panic!("{host} missing: {listing}"))
            .to_string()
    };
    assert!(
        line_of("root@old.example").starts_with("STALE"),
        "{listing}"
    );
    assert!(line_of("root@old.example").contains("40d ago"), "{listing}");
    assert!(line_of("root@new.example").starts_with("ok"), "{listing}");
    assert!(listing.ends_with("1 host needs a drill (none in the last 30 days)\n"));

    let lenient = status(&env, &["--max-age-days", "60"]);
    assert_eq!(lenient.status.code(), Some(0), "{}", text(&lenient));
    assert!(!stdout(&lenient).contains("STALE"));
}

#[test]
fn status_without_any_drill_exits_one_and_says_what_to_do() {
    let env = Env::new();
    let st = status(&env, &[]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(stdout(&st).contains("no drill recorded"), "{}", text(&st));
}

#[test]
fn option_like_destinations_are_refused_before_the_touch_and_before_ssh() {
    let env = Env::new();
    env.init_ca();
    let marker = env.dir.path().join("proxy-ran");
    let evil = format!("-oProxyCommand=touch {}", marker.display());
    let user = whoami();

    // After `--` clap takes it as a destination; from a hosts file it is a line like any other.
    let out = drill(&env, &["--", &format!("{user}@127.0.0.1"), &evil]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("begins with `-`"),
        "{}",
        text(&out)
    );

    let hosts = env.dir.path().join("hosts");
    fs::write(&hosts, format!("# fleet\n{user}@127.0.0.1\n{evil}\n")).unwrap();
    let out = drill(&env, &["--hosts-file", hosts.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("begins with `-`"),
        "{err}"
    );

    let out = drill(&env, &["ssh://-oProxyCommand=id@127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // ssh never ran (the ProxyCommand would have created the marker) and nothing was issued.
    assert!(!marker.exists());
    assert!(!env.home.join("audit.log").exists());
}

#[test]
fn a_destination_without_a_user_is_refused_by_name() {
    let env = Env::new();
    env.init_ca();
    let out = drill(&env, &["127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no user in destination `127.0.0.1`"), "{err}");
    assert!(!env.home.join("audit.log").exists());
}

#[test]
fn a_missing_ssh_client_is_a_clear_error_and_costs_no_touch() {
    let env = Env::new();
    env.init_ca();
    let empty = tempfile::tempdir().unwrap();
    let out = env
        .cmd()
        .env("PATH", empty.path())
        .args(["drill", "root@127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ssh was not found in PATH"), "{err}");
    assert!(err.contains("openssh-client"), "{err}");
    assert!(!env.home.join("audit.log").exists());
}

#[test]
fn a_login_with_another_key_is_not_a_pass() {
    // The host does not trust the CA but accepts a plain key of the user's, as an IdentityFile
    // from ~/.ssh/config would offer it after the certificate. The certificate's forced `true`
    // did not run, so the drill must not report a pass.
    let env = Env::new();
    env.init_ca();
    let other = env.dir.path().join("id_other");
    common::keygen(&other);
    let authorized = env.dir.path().join("authorized_keys");
    fs::copy(other.with_extension("pub"), &authorized).unwrap();
    let sshd = Sshd::start_with(
        None,
        &format!(
            "Match all\n    AuthorizedKeysFile {}\n",
            authorized.display()
        ),
    );
    let dest = format!("ssh://{}@127.0.0.1:{}", whoami(), sshd.port);
    let identity = format!("IdentityFile={}", other.display());

    let out = drill(&env, &["-o", &identity, &dest]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = stdout(&out);
    assert!(report.starts_with("failed "), "{}", text(&out));
    assert!(
        report.contains("not with the drill certificate"),
        "{report}"
    );
    // The other key really did log in: without the forced-command check this would be a pass.
    let log = sshd.log_text();
    assert!(log.contains("Accepted publickey"), "{log}");
    assert!(!env.home.join("drills.json").exists());
}

#[test]
fn the_ssh_config_named_with_f_is_the_one_ssh_reads() {
    let env = Env::new();
    env.init_ca();
    let sshd = Sshd::start(Some(&env.bundle()));
    // Only this file knows where `drill-target` is.
    let config = env.dir.path().join("ssh_config");
    fs::write(
        &config,
        format!(
            "Host drill-target\n  HostName 127.0.0.1\n  Port {}\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n",
            sshd.port
        ),
    )
    .unwrap();
    let dest = format!("{}@drill-target", whoami());
    let out = env
        .cmd()
        .args(["drill", "--timeout", "5", "-F"])
        .arg(&config)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), sshd.log_text());
    assert!(stdout(&out).starts_with("pass "), "{}", text(&out));

    // The options that make a pass mean something still come first and win over the file.
    fs::write(
        &config,
        format!(
            "Host drill-target\n  HostName 127.0.0.1\n  Port {}\n  BatchMode no\n  \
             ControlMaster yes\n  ControlPath {}/cm-%C\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n",
            sshd.port,
            env.dir.path().display()
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["drill", "--timeout", "5", "-F"])
        .arg(&config)
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let masters = fs::read_dir(env.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("cm-"))
        })
        .count();
    assert_eq!(masters, 0, "a control master was set up");

    let out = env.run(&["drill", "-F", "", &dest]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
