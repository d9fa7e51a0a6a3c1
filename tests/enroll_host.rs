//! `sshbreak enroll-host` against temporary sshd configuration trees, checked with the real
//! `sshd -t` / `sshd -T` and by logging in to a throwaway sshd on 127.0.0.1 — locally (`--local`),
//! over ssh to three loopback sshds in parallel, and through the `--emit` outputs. Every ssh the
//! tests cause runs with `-F none`: ssh finds ~/.ssh/config through the passwd entry, not $HOME,
//! so a developer's own config would otherwise take part. Where only the command line matters, a
//! stand-in `ssh` early in PATH records it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;
use yaml_rust2::{Yaml, YamlLoader};

use common::{Env, SSHD, Sshd, run, text, whoami};
use tempfile::TempDir;

/// A user no test runs as, for Match blocks that must not apply to the test login.
const OTHER_USER: &str = "sshbreak-nobody";
/// How long to wait for sshd to come back after a SIGHUP.
const RELOAD_GRACE: Duration = Duration::from_secs(10);

/// A temporary sshd configuration tree: host key, config file and room for CA files.
struct Tree {
    dir: TempDir,
}

impl Tree {
    /// `head` goes before the base settings (e.g. an Include, or directives that must win),
    /// `tail` after them (e.g. a Match block).
    fn new(head: &str, tail: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_ed25519");
        common::keygen(&host_key);
        let head = head.replace("@DIR@", &dir.path().display().to_string());
        let tail = tail.replace("@DIR@", &dir.path().display().to_string());
        let config = format!("{head}{}{tail}", Sshd::base_config(dir.path(), &host_key));
        fs::write(dir.path().join("sshd_config"), config).unwrap();
        Tree { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("sshd_config")
    }

    fn ca(&self) -> PathBuf {
        self.path("ca.pub")
    }

    /// Start sshd on this tree; the tree lives on inside the returned server.
    fn start(self) -> Sshd {
        let config = self.config();
        Sshd::start_config(self.dir, config)
    }
}

/// Every file under `dir` with its bytes and mode, but not what a running sshd writes.
fn files(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name == "sshd.log" || name == "sshd.pid" {
                continue;
            }
            let meta = fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.clone(),
                    (fs::read(&p).unwrap(), meta.permissions().mode()),
                );
            }
        }
    }
    out
}

fn sshd_t(config: &Path) -> Output {
    run(Command::new(SSHD).arg("-t").arg("-f").arg(config))
}

/// `sshd -T` for the global configuration or, with `conn`, for one connection (`-C`).
fn effective_ca(config: &Path, conn: Option<&str>) -> String {
    let mut cmd = Command::new(SSHD);
    cmd.arg("-T").arg("-f").arg(config);
    if let Some(c) = conn {
        cmd.arg("-C").arg(c);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "sshd -T: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("trustedusercakeys "))
        .unwrap_or("")
        .to_string()
}

fn enroll(env: &Env, tree_config: &Path, ca: &Path, extra: &[&str]) -> Output {
    env.cmd()
        .args(["enroll-host", "--local", "--sshd-config"])
        .arg(tree_config)
        .arg("--ca-dest")
        .arg(ca)
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A certificate from `sshbreak issue` for the user the tests run as.
fn issue(env: &Env, name: &str) -> (PathBuf, PathBuf) {
    let key = env.dir.path().join(name);
    let out = env
        .cmd()
        .args(["issue", "-n", &whoami(), "-V", "10m", "-o"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "issue: {}", text(&out));
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    (key, cert)
}

/// A certificate signed by `ssh-keygen -s` with a CA that has nothing to do with sshbreak.
fn foreign_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("corp_ca");
    let key = dir.join("corp_user");
    for k in [&ca, &key] {
        let out = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "corp", "-f"])
            .arg(k));
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = run(Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(&ca)
        .args(["-I", "corp-test", "-n", &whoami(), "-V", "-5m:+10m"])
        .arg(format!("{}.pub", key.display())));
    assert!(out.status.success(), "ssh-keygen -s: {}", text(&out));
    let cert = PathBuf::from(format!("{}-cert.pub", key.display()));
    (PathBuf::from(format!("{}.pub", ca.display())), key, cert)
}

/// Log in, allowing for sshd re-executing itself after a reload.
fn login(sshd: &Sshd, key: &Path, cert: &Path) {
    let deadline = Instant::now() + RELOAD_GRACE;
    loop {
        let out = sshd.ssh(&whoami(), key, cert, "echo in");
        if out.status.success() {
            assert_eq!(stdout(&out).trim(), "in");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "login failed: {}\nsshd log:\n{}",
            text(&out),
            sshd.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn debian_tree() -> Tree {
    let tree = Tree::new(
        "Include @DIR@/sshd_config.d/*.conf\n",
        &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
    );
    fs::create_dir(tree.path("sshd_config.d")).unwrap();
    fs::write(
        tree.path("sshd_config.d/50-local.conf"),
        "ClientAliveInterval 30\n",
    )
    .unwrap();
    tree
}

#[test]
fn debian_layout_enrolls_logs_in_and_a_second_run_changes_nothing() {
    let env = Env::new();
    env.init_ca();
    let tree = debian_tree();
    let main_before = fs::read(tree.config()).unwrap();

    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("local: enrolled"), "{}", text(&out));
    assert!(sshd_t(&tree.config()).status.success());
    // A drop-in in the included folder; the main file is untouched.
    assert_eq!(fs::read(tree.config()).unwrap(), main_before);
    let drop_in = fs::read_to_string(tree.path("sshd_config.d/00-sshbreak.conf")).unwrap();
    assert!(
        drop_in.contains("# added by sshbreak enroll-host"),
        "{drop_in}"
    );
    assert_eq!(
        effective_ca(&tree.config(), None),
        tree.ca().display().to_string()
    );
    let ca_meta = fs::metadata(tree.ca()).unwrap();
    assert_eq!(ca_meta.permissions().mode() & 0o777, 0o644);
    // No copies or temporary files are left behind.
    for (p, _) in files(tree.dir.path()) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.contains("sshbreak-bak") && !name.contains("sshbreak-new"),
            "{name}"
        );
    }

    let before = files(tree.dir.path());
    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("already enrolled"), "{}", text(&out));
    assert_eq!(files(tree.dir.path()), before, "a second run changed files");

    let sshd = tree.start();
    let (key, cert) = issue(&env, "login");
    login(&sshd, &key, &cert);
}

#[test]
fn without_include_the_directive_stays_out_of_the_match_block() {
    let env = Env::new();
    env.init_ca();
    let tree = Tree::new(
        "",
        &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
    );
    let config = tree.config();
    let ca = tree.ca();
    // Running sshd first: enroll reloads it through its PidFile (SIGHUP), keeping sessions.
    let sshd = tree.start();
    let out = enroll(&env, &config, &ca, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("SIGHUP"), "{}", text(&out));

    let text_after = fs::read_to_string(&config).unwrap();
    let directive = text_after.find("TrustedUserCAKeys").unwrap();
    let block = text_after.find("Match User").unwrap();
    assert!(directive < block, "{text_after}");
    let ca_s = ca.display().to_string();
    assert_eq!(effective_ca(&config, None), ca_s);
    let me = format!("user={},host=localhost,addr=127.0.0.1", whoami());
    assert_eq!(effective_ca(&config, Some(&me)), ca_s);
    let other = format!("user={OTHER_USER},host=localhost,addr=127.0.0.1");
    assert_eq!(effective_ca(&config, Some(&other)), ca_s);

    let (key, cert) = issue(&env, "login");
    login(&sshd, &key, &cert);
}

#[test]
fn a_host_that_trusts_another_ca_keeps_it_and_gains_sshbreak() {
    let env = Env::new();
    env.init_ca();
    let tree = Tree::new("TrustedUserCAKeys @DIR@/corp_ca.pub\n", "");
    let (corp_ca_pub, corp_key, corp_cert) = foreign_cert(env.dir.path());
    let corp_file = tree.path("corp_ca.pub");
    fs::copy(&corp_ca_pub, &corp_file).unwrap();
    let corp_before = fs::read_to_string(&corp_file).unwrap();
    let config_before = fs::read(tree.config()).unwrap();
    let (config, ca) = (tree.config(), tree.ca());
    let sshd = tree.start();
    login(&sshd, &corp_key, &corp_cert);

    let out = enroll(&env, &config, &ca, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("already in effect"), "{}", text(&out));
    // The keys went into the file in effect; no second TrustedUserCAKeys, no file at --ca-dest.
    assert_eq!(fs::read(&config).unwrap(), config_before);
    assert!(!ca.exists());
    let corp_after = fs::read_to_string(&corp_file).unwrap();
    assert!(corp_after.starts_with(&corp_before), "{corp_after}");
    assert_eq!(
        corp_after
            .lines()
            .filter(|l| l.starts_with("sk-ecdsa"))
            .count(),
        1
    );

    login(&sshd, &corp_key, &corp_cert);
    let (key, cert) = issue(&env, "login");
    login(&sshd, &key, &cert);
}

#[test]
fn a_config_sshd_already_rejects_is_refused_and_left_alone() {
    let env = Env::new();
    env.init_ca();
    let tree = Tree::new("", "NoSuchKeyword yes\n");
    assert!(!sshd_t(&tree.config()).status.success());
    let before = files(tree.dir.path());
    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("refused") && said.contains("sshd -t"),
        "{said}"
    );
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(files(tree.dir.path()), before);
}

#[test]
fn a_failure_after_writing_restores_the_originals_byte_for_byte() {
    let env = Env::new();
    env.init_ca();

    // Injected: the test-only hook fails the run after the files are written and checked.
    let tree = debian_tree();
    let before = files(tree.dir.path());
    let out = env
        .cmd()
        .env("SSHBREAK_TEST_FAIL_AFTER_WRITE", "1")
        .args(["enroll-host", "--local", "--no-reload", "--sshd-config"])
        .arg(tree.config())
        .arg("--ca-dest")
        .arg(tree.ca())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("restored the original files"),
        "{}",
        text(&out)
    );
    assert_eq!(files(tree.dir.path()), before);

    // For real: an included file read before sshbreak's drop-in says `TrustedUserCAKeys none`, so
    // the confirming `sshd -T` still shows no CA file after the write.
    let tree = debian_tree();
    fs::write(
        tree.path("sshd_config.d/00-aaa-off.conf"),
        "TrustedUserCAKeys none\n",
    )
    .unwrap();
    let before = files(tree.dir.path());
    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = stdout(&out);
    assert!(said.contains("no TrustedUserCAKeys in effect"), "{said}");
    assert!(said.contains("restored the original files"), "{said}");
    assert_eq!(files(tree.dir.path()), before);
}

#[test]
fn dry_run_shows_a_diff_and_remove_takes_everything_back_out() {
    let env = Env::new();
    env.init_ca();
    let tree = Tree::new(
        "",
        &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
    );
    let before = files(tree.dir.path());
    let out = enroll(&env, &tree.config(), &tree.ca(), &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("+++ {}", tree.ca().display())),
        "{said}"
    );
    assert!(said.contains("+TrustedUserCAKeys "), "{said}");
    assert!(said.contains("@@ -"), "{said}");
    assert!(said.contains("dry run, nothing changed"), "{said}");
    assert_eq!(files(tree.dir.path()), before);

    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = enroll(
        &env,
        &tree.config(),
        &tree.ca(),
        &["--no-reload", "--remove"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("removed"), "{}", text(&out));
    assert_eq!(
        files(tree.dir.path()),
        before,
        "remove left something behind"
    );
    let out = enroll(
        &env,
        &tree.config(),
        &tree.ca(),
        &["--no-reload", "--remove"],
    );
    assert!(stdout(&out).contains("not enrolled"), "{}", text(&out));
}

/// How a remote test host lays out its sshd configuration.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// `Include sshd_config.d/*.conf` first, and the folder exists: a drop-in.
    Debian,
    /// No Include: the directive before the first Match.
    Plain,
    /// `Include` of a folder that does not exist: the directive in the main file.
    MissingIncludeFolder,
}

/// A loopback sshd that admits `client_key` for the test user (for the remote mode's own ssh).
fn remote_tree(client_pub: &Path, layout: Layout) -> Tree {
    let head = match layout {
        Layout::Debian => {
            "Include @DIR@/sshd_config.d/*.conf\nAuthorizedKeysFile @DIR@/authorized_keys\n"
        }
        Layout::Plain => "AuthorizedKeysFile @DIR@/authorized_keys\n",
        Layout::MissingIncludeFolder => {
            "Include @DIR@/missing.d/*.conf\nAuthorizedKeysFile @DIR@/authorized_keys\n"
        }
    };
    let tree = Tree::new(
        head,
        &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
    );
    if layout == Layout::Debian {
        fs::create_dir(tree.path("sshd_config.d")).unwrap();
    }
    fs::copy(client_pub, tree.path("authorized_keys")).unwrap();
    tree
}

#[test]
fn remote_mode_enrolls_three_hosts_in_parallel() {
    let env = Env::new();
    env.init_ca();
    let client = env.dir.path().join("client_ed25519");
    common::keygen(&client);
    let client_pub = PathBuf::from(format!("{}.pub", client.display()));

    let trees = [
        remote_tree(&client_pub, Layout::Debian),
        remote_tree(&client_pub, Layout::Plain),
        remote_tree(&client_pub, Layout::MissingIncludeFolder),
    ];
    let paths: Vec<(PathBuf, PathBuf, PathBuf)> = trees
        .iter()
        .map(|t| (t.dir.path().to_path_buf(), t.config(), t.ca()))
        .collect();
    let originals: Vec<_> = paths.iter().map(|(d, _, _)| files(d)).collect();
    let servers: Vec<Sshd> = trees.into_iter().map(Tree::start).collect();
    let hosts_file = env.dir.path().join("hosts");
    let mut lines = String::from("# three loopback sshds\n\n");
    for (s, (_, config, ca)) in servers.iter().zip(&paths) {
        lines += &format!(
            "ssh://{}@127.0.0.1:{} sshd_config={} ca_dest={}\n",
            whoami(),
            s.port,
            config.display(),
            ca.display()
        );
    }
    fs::write(&hosts_file, lines).unwrap();
    let remote = |extra: &[&str], fail_after_write: bool| {
        let mut cmd = env.cmd();
        if fail_after_write {
            cmd.env("SSHBREAK_TEST_FAIL_AFTER_WRITE", "1");
        }
        // -F none: a developer's ~/.ssh/config must not share, proxy or redirect these
        // connections, nor the --verify drill's.
        cmd.arg("enroll-host")
            .arg("--hosts-file")
            .arg(&hosts_file)
            .args(["-j", "3", "-F", "none"]);
        for o in [
            format!("IdentityFile={}", client.display()),
            "IdentitiesOnly=yes".into(),
            "IdentityAgent=none".into(),
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "LogLevel=ERROR".into(),
        ] {
            cmd.arg("-o").arg(o);
        }
        cmd.args(extra).output().unwrap()
    };
    let unchanged = || {
        for ((d, _, _), orig) in paths.iter().zip(&originals) {
            assert_eq!(&files(d), orig, "{} changed", d.display());
        }
    };

    let out = remote(&["--dry-run"], false);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert_eq!(
        said.matches("dry run, nothing changed").count(),
        3,
        "{said}"
    );
    assert!(said.contains("sshd_config.d/00-sshbreak.conf"), "{said}");
    // The host whose Include names a missing folder gets the line in its main file.
    assert!(!said.contains("missing.d/00-sshbreak.conf"), "{said}");
    assert!(said.contains("missing.d, does not exist"), "{said}");
    unchanged();

    // The transaction script's rollback, on the far side.
    let out = remote(&[], true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches("restored the original files").count(),
        3,
        "{}",
        text(&out)
    );
    unchanged();

    let out = remote(&[], false);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert_eq!(said.matches(": enrolled (").count(), 3, "{said}");
    assert_eq!(said.matches("SIGHUP").count(), 3, "{said}");
    for (_, config, ca) in &paths {
        assert!(sshd_t(config).status.success());
        assert_eq!(effective_ca(config, None), ca.display().to_string());
    }
    let (key, cert) = issue(&env, "login");
    for s in &servers {
        login(s, &key, &cert);
    }

    // Again, with the drill: nothing to change, and the sshbreak certificate path works.
    let out = remote(&["--verify"], false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches("drill passed").count(),
        3,
        "{}",
        text(&out)
    );
    assert_eq!(
        stdout(&out).matches("already enrolled").count(),
        3,
        "{}",
        text(&out)
    );

    let out = remote(&["--remove"], false);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out).matches(": removed (").count(),
        3,
        "{}",
        text(&out)
    );
    unchanged();
}

#[test]
fn destinations_that_look_like_options_are_refused() {
    let env = Env::new();
    env.init_ca();
    let out = env.run(&["enroll-host", "--", "-oProxyCommand=touch /tmp/pwned"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("begins with `-`"),
        "{}",
        text(&out)
    );
}

#[test]
fn verify_and_emit_refuse_combinations_that_make_no_sense() {
    let env = Env::new();
    env.init_ca();
    for args in [
        &["enroll-host", "--local", "--verify"][..],
        &["enroll-host", "--verify", "--no-reload", "root@127.0.0.1"],
        &["enroll-host", "--verify", "--dry-run", "root@127.0.0.1"],
        &["enroll-host", "--emit", "shell", "--remove"],
        &["enroll-host", "--local", "--sudo"],
        &["enroll-host"],
        &["enroll-host", "-o=-F/tmp/x", "root@127.0.0.1"],
        &["enroll-host", "-F", "", "root@127.0.0.1"],
        &["enroll-host", "--local", "--sshd-config", "sshd_config"],
        &["enroll-host", "--local", "-F", "none"],
        &["enroll-host", "--emit", "shell", "-p", "22"],
    ] {
        let out = env.cmd().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.lines().filter(|l| l.starts_with("sshbreak:")).count(),
            1,
            "{err}"
        );
    }
}

fn emit(env: &Env, format: &str, tree: &Tree) -> String {
    let out = env
        .cmd()
        .args(["enroll-host", "--emit", format, "--sshd-config"])
        .arg(tree.config())
        .arg("--ca-dest")
        .arg(tree.ca())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

/// Parse one YAML document; a parse error fails the test with the document shown.
fn yaml(doc: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(doc).unwrap_or_else(|e| panic!("not valid YAML: {e}\n{doc}"));
    assert_eq!(docs.len(), 1, "one YAML document expected:\n{doc}");
    docs.remove(0)
}

/// The module a task uses: its one `ansible.builtin.*` key.
fn task_module(task: &Yaml) -> String {
    task.as_hash()
        .and_then(|h| {
            h.keys()
                .filter_map(Yaml::as_str)
                .find(|k| k.starts_with("ansible.builtin."))
        })
        .unwrap_or_else(|| panic!("task without an ansible.builtin module: {task:?}"))
        .to_string()
}

#[test]
fn emitted_ansible_and_cloud_init_are_valid_yaml() {
    let env = Env::new();
    env.init_ca();
    let tree = debian_tree();
    let ansible = emit(&env, "ansible", &tree);
    let doc = yaml(&ansible);
    let play = &doc[0];
    assert_eq!(play["hosts"].as_str(), Some("all"));
    assert_eq!(play["become"].as_bool(), Some(true));
    let tasks = play["tasks"].as_vec().expect("tasks");
    let modules: Vec<String> = tasks.iter().map(task_module).collect();
    for m in ["ansible.builtin.blockinfile", "ansible.builtin.copy"] {
        assert!(
            modules.iter().any(|x| x == m),
            "{m} missing from {modules:?}"
        );
    }
    let block = tasks
        .iter()
        .map(|t| &t["ansible.builtin.blockinfile"])
        .find(|b| !b.is_badvalue())
        .unwrap();
    assert_eq!(block["validate"].as_str(), Some("/usr/sbin/sshd -t -f %s"));
    assert_eq!(
        play["handlers"][0]["ansible.builtin.service"]["state"].as_str(),
        Some("reloaded")
    );
    let keys = play["vars"]["sshbreak_ca_keys"]
        .as_vec()
        .expect("sshbreak_ca_keys");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| {
        k.as_str()
            .is_some_and(|k| k.starts_with("sk-ecdsa-sha2-nistp256@openssh.com "))
    }));

    let cloud = emit(&env, "cloud-init", &tree);
    assert!(cloud.starts_with("#cloud-config\n"), "{cloud}");
    let doc = yaml(&cloud);
    let file = &doc["write_files"][0];
    let content = file["content"].as_str().expect("content");
    assert!(content.starts_with("#!/bin/sh\n"), "{content}");
    assert!(content.contains("sshd -t") || content.contains("-t -f"));
    let path = file["path"].as_str().expect("path");
    let runcmd = doc["runcmd"].as_vec().expect("runcmd");
    assert_eq!(runcmd.len(), 1);
    let cmd: Vec<_> = runcmd[0]
        .as_vec()
        .expect("runcmd entry")
        .iter()
        .map(|v| v.as_str())
        .collect();
    assert_eq!(cmd, [Some("sh"), Some(path)]);
}

#[test]
fn the_emitted_shell_script_enrolls_once_and_then_changes_nothing() {
    let env = Env::new();
    env.init_ca();
    for (n, tree) in [
        debian_tree(),
        Tree::new(
            "",
            &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let script = env.dir.path().join("enroll.sh");
        fs::write(&script, emit(&env, "shell", &tree)).unwrap();
        let out = run(Command::new("sh").arg(&script));
        assert!(out.status.success(), "{}", text(&out));
        assert!(stdout(&out).contains("enrolled"), "{}", text(&out));
        let config = tree.config();
        assert!(sshd_t(&config).status.success());
        assert_eq!(effective_ca(&config, None), tree.ca().display().to_string());
        let me = format!("user={},host=localhost,addr=127.0.0.1", whoami());
        assert_eq!(
            effective_ca(&config, Some(&me)),
            tree.ca().display().to_string()
        );
        let before = files(tree.dir.path());
        let out = run(Command::new("sh").arg(&script));
        assert!(out.status.success(), "{}", text(&out));
        assert!(stdout(&out).contains("already enrolled"), "{}", text(&out));
        assert_eq!(files(tree.dir.path()), before);
        // sshbreak itself agrees.
        let out = enroll(&env, &config, &tree.ca(), &["--no-reload"]);
        assert!(stdout(&out).contains("already enrolled"), "{}", text(&out));
        let sshd = tree.start();
        let (key, cert) = issue(&env, &format!("login{n}"));
        login(&sshd, &key, &cert);
    }
}

/// A stand-in `ssh` first in PATH: it appends its arguments (one a line, then `--END--`) to
/// `<dir>/ssh-args` and fails as an unreachable host would.
fn fake_ssh(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("fakebin");
    fs::create_dir_all(&bin).unwrap();
    let log = dir.join("ssh-args");
    let script = bin.join("ssh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> '{}'\necho --END-- >> '{}'\n\
             echo 'ssh: connect to host nowhere port 22: Connection refused' >&2\nexit 255\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (PathBuf::from(path), log)
}

#[test]
fn verify_refuses_a_destination_without_a_user_before_any_host_is_touched() {
    let env = Env::new();
    env.init_ca();
    let (path, log) = fake_ssh(env.dir.path());
    let hosts = env.dir.path().join("hosts");
    fs::write(
        &hosts,
        "root@127.0.0.1\n127.0.0.1 sshd_config=/etc/ssh/sshd_config\n",
    )
    .unwrap();
    for args in [
        &["enroll-host", "--verify", "root@127.0.0.1", "127.0.0.1"][..],
        &[
            "enroll-host",
            "--verify",
            "--hosts-file",
            hosts.to_str().unwrap(),
        ],
    ] {
        let out = env.cmd().env("PATH", &path).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no user in destination `127.0.0.1`"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(stdout(&out).is_empty(), "{}", text(&out));
        // ssh never ran: nothing was probed, enrolled or reloaded.
        assert!(!log.exists(), "{}", fs::read_to_string(&log).unwrap());
    }
    // Without --verify a host without a user is fine (ssh picks the user).
    let out = env
        .cmd()
        .env("PATH", &path)
        .args(["enroll-host", "127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("127.0.0.1: failed: ssh to 127.0.0.1"),
        "{}",
        text(&out)
    );
}

#[test]
fn remote_ssh_gets_f_and_timeouts_after_the_users_own_options() {
    let env = Env::new();
    env.init_ca();
    let (path, log) = fake_ssh(env.dir.path());
    let out = env
        .cmd()
        .env("PATH", &path)
        .args([
            "enroll-host",
            "-F",
            "none",
            "-o",
            "ConnectTimeout=3",
            "-p",
            "2222",
            "root@web1.invalid",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("Connection refused"),
        "{}",
        text(&out)
    );
    let logged = fs::read_to_string(&log).unwrap();
    let argv: Vec<&str> = logged.lines().take_while(|l| *l != "--END--").collect();
    assert_eq!(argv[..4], ["-F", "none", "-p", "2222"], "{argv:?}");
    let pos = |s: &str| argv.iter().position(|a| *a == s).unwrap_or(usize::MAX);
    // ssh keeps the first value: the user's ConnectTimeout is before sshbreak's default.
    assert!(
        pos("ConnectTimeout=3") < pos("ConnectTimeout=10"),
        "{argv:?}"
    );
    for o in [
        "BatchMode=yes",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
    ] {
        assert!(pos(o) < pos("--"), "{o} in {argv:?}");
    }
    assert_eq!(
        argv[argv.len() - 4..],
        ["--", "root@web1.invalid", "sh", "-s"]
    );
}

#[test]
fn an_include_of_a_missing_folder_gets_the_directive_in_the_main_file() {
    let env = Env::new();
    env.init_ca();
    let tree = Tree::new(
        "Include @DIR@/missing.d/*.conf\n",
        &format!("Match User {OTHER_USER}\n  X11Forwarding no\n"),
    );
    assert!(sshd_t(&tree.config()).status.success());
    let before = files(tree.dir.path());

    let out = enroll(&env, &tree.config(), &tree.ca(), &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("+++ {}", tree.config().display())),
        "{said}"
    );
    assert!(!said.contains("00-sshbreak.conf"), "{said}");
    assert_eq!(files(tree.dir.path()), before);

    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("does not exist"), "{}", text(&out));
    assert!(!tree.path("missing.d").exists());
    assert!(sshd_t(&tree.config()).status.success());
    let config = fs::read_to_string(tree.config()).unwrap();
    let directive = config.find("TrustedUserCAKeys").unwrap();
    assert!(directive < config.find("Match User").unwrap(), "{config}");
    let ca = tree.ca().display().to_string();
    assert_eq!(effective_ca(&tree.config(), None), ca);
    let me = format!("user={},host=localhost,addr=127.0.0.1", whoami());
    assert_eq!(effective_ca(&tree.config(), Some(&me)), ca);

    let out = enroll(&env, &tree.config(), &tree.ca(), &["--no-reload"]);
    assert!(stdout(&out).contains("already enrolled"), "{}", text(&out));
    let sshd = tree.start();
    let (key, cert) = issue(&env, "login");
    login(&sshd, &key, &cert);
}

/// Every scalar of a YAML document that contains `needle`, with its tag (`!unsafe`, or empty).
fn tagged_scalars(doc: &str, needle: &str) -> Vec<(String, String)> {
    struct Collect<'a> {
        needle: &'a str,
        found: Vec<(String, String)>,
    }
    impl MarkedEventReceiver for Collect<'_> {
        fn on_event(&mut self, ev: Event, _mark: Marker) {
            if let Event::Scalar(value, _, _, tag) = ev
                && value.contains(self.needle)
            {
                let tag = tag.map_or(String::new(), |t| format!("{}{}", t.handle, t.suffix));
                self.found.push((tag, value));
            }
        }
    }
    let mut c = Collect {
        needle,
        found: Vec::new(),
    };
    Parser::new_from_str(doc)
        .load(&mut c, true)
        .unwrap_or_else(|e| panic!("not valid YAML: {e}\n{doc}"));
    c.found
}

#[test]
fn a_bundle_comment_with_template_code_reaches_ansible_only_as_unsafe_text() {
    let env = Env::new();
    env.init_ca();
    let evil = "{{ lookup('pipe','id') }}";
    let bundle = fs::read_to_string(env.bundle()).unwrap();
    let line = bundle.lines().find(|l| l.starts_with("sk-ecdsa")).unwrap();
    fs::write(env.bundle(), format!("{line} {evil} {{% raw %}}\n")).unwrap();
    let tree = debian_tree();
    let play = emit(&env, "ansible", &tree);

    let doc = yaml(&play);
    let vars = &doc[0]["vars"];
    let keys = vars["sshbreak_ca_keys"].as_vec().expect("sshbreak_ca_keys");
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_str().unwrap();
    assert!(
        key.starts_with("sk-ecdsa-sha2-nistp256@openssh.com "),
        "{key}"
    );
    assert!(key.ends_with(&format!(" {evil} {{% raw %}}")), "{key}");
    let bundle_var = vars["sshbreak_ca_bundle"].as_str().unwrap();
    assert_eq!(bundle_var, format!("{key}\n"));

    // The comment is in the key list and in the bundle, and in both carries `!unsafe`, which
    // tells Ansible to use the text as it is instead of evaluating it.
    let found = tagged_scalars(&play, "lookup(");
    assert_eq!(found.len(), 2, "{found:?}");
    for (tag, _) in &found {
        assert_eq!(tag, "!unsafe", "{found:?}");
    }
    // So are the paths, which come from the command line.
    for v in ["sshbreak_sshd_config", "sshbreak_ca_dest"] {
        let path = vars[v].as_str().unwrap();
        let found = tagged_scalars(&play, path);
        assert!(
            found.iter().all(|(tag, _)| tag == "!unsafe"),
            "{v}: {found:?}"
        );
    }
}

#[test]
fn emit_honours_no_reload() {
    let env = Env::new();
    env.init_ca();
    let tree = debian_tree();
    let emit_with = |format: &str, extra: &[&str]| {
        let out = env
            .cmd()
            .args(["enroll-host", "--emit", format, "--sshd-config"])
            .arg(tree.config())
            .arg("--ca-dest")
            .arg(tree.ca())
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        stdout(&out)
    };
    let quiet = emit_with("ansible", &["--no-reload"]);
    let doc = yaml(&quiet);
    assert!(doc[0]["handlers"].is_badvalue(), "{quiet}");
    assert!(!quiet.contains("notify:"), "{quiet}");
    let loud = yaml(&emit_with("ansible", &[]));
    assert_eq!(loud[0]["handlers"][0]["name"].as_str(), Some("Reload sshd"));

    for (extra, want) in [(&["--no-reload"][..], "RELOAD=0"), (&[][..], "RELOAD=1")] {
        let cloud = yaml(&emit_with("cloud-init", extra));
        let content = cloud["write_files"][0]["content"].as_str().unwrap();
        assert!(content.lines().any(|l| l == want), "{want}: {content}");
    }
    assert!(
        emit_with("shell", &["--no-reload"])
            .lines()
            .any(|l| l == "RELOAD=0")
    );
}
