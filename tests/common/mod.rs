//! Test support shared by the integration tests: a throwaway sshd on 127.0.0.1 (stopped on drop,
//! also when a test fails), a temporary sshbreak home with a soft token and a PIN file, and helpers
//! to run the real `ssh`/`ssh-keygen`. Nothing here is skipped when a peer is missing: the tests
//! need openssh-client and openssh-server, which `.ci/run` installs.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub const SSHD: &str = "/usr/sbin/sshd";
pub const PIN: &str = "246810";

/// The user the tests run as: a non-root sshd can only admit its own user.
pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A TCP port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Run a command and return its output, panicking with its stderr if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Make an unencrypted ed25519 key pair at `path` (and `path.pub`) with the real ssh-keygen.
pub fn keygen(path: &Path) {
    let out = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path));
    assert!(
        out.status.success(),
        "ssh-keygen -f {}: {}",
        path.display(),
        text(&out)
    );
}

/// A throwaway sshd listening on 127.0.0.1 only.
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    child: Option<std::process::Child>,
}

impl Sshd {
    /// Start an sshd trusting the CA keys in `trusted_ca` (None: no TrustedUserCAKeys line).
    pub fn start(trusted_ca: Option<&Path>) -> Sshd {
        Self::start_with(trusted_ca, "")
    }

    /// Start with extra configuration lines appended (before nothing else: put `Match` last).
    pub fn start_with(trusted_ca: Option<&Path>, extra: &str) -> Sshd {
        // A free port can be taken by a parallel test between our probe and sshd's bind: then
        // try again with another port.
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let host_key = dir.path().join("host_ed25519");
            keygen(&host_key);
            let mut config = Self::base_config(dir.path(), &host_key);
            if let Some(ca) = trusted_ca {
                config += &format!("TrustedUserCAKeys {}\n", ca.display());
            }
            config += extra;
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, config).unwrap();
            match Self::spawn(dir, config_path) {
                Ok(sshd) => return sshd,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("sshd did not start:\n{log}"),
            }
        }
        panic!("sshd found no free port in 5 tries:\n{last}");
    }

    /// The settings every test sshd needs, without TrustedUserCAKeys; `Port` comes first.
    pub fn base_config(dir: &Path, host_key: &Path) -> String {
        let port = free_port();
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
             AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n",
            host_key.display(),
            dir.join("sshd.pid").display()
        )
    }

    /// Start sshd on a config file the caller wrote (it must name `<dir>/sshd.pid` as PidFile and
    /// 127.0.0.1 as its only ListenAddress).
    pub fn start_config(dir: TempDir, config: PathBuf) -> Sshd {
        Self::spawn(dir, config).unwrap_or_else(|log| panic!("sshd did not start:\n{log}"))
    }

    /// Run `sshd -D` as our child and wait until *it* says it listens (a connect alone could reach
    /// another test's sshd on a reused port). `Err` carries sshd's log when it exits first.
    fn spawn(dir: TempDir, config: PathBuf) -> Result<Sshd, String> {
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains("ListenAddress 127.0.0.1"),
            "test sshd must listen on 127.0.0.1 only"
        );
        let port: u16 = text
            .lines()
            .find_map(|l| l.strip_prefix("Port "))
            .expect("Port line")
            .trim()
            .parse()
            .unwrap();
        ensure_privsep_dir();
        let log = dir.path().join("sshd.log");
        let pid_file = dir.path().join("sshd.pid");
        // -D: sshd stays our child, so the guard below owns it from the first instant and stops
        // it even when a later assertion fails (a daemonised sshd writes its pid too late for that).
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config)
            .arg("-E")
            .arg(&log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SSHD}: {e} (install openssh-server)"));
        let mut sshd = Sshd {
            port,
            dir,
            config,
            log,
            pid_file,
            child: Some(child),
        };
        let ready = format!("Server listening on 127.0.0.1 port {port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sshd.log_text().contains(&ready) {
            let exited = sshd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                return Err(sshd.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {port}:\n{}",
                sshd.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Listening is logged just before accept starts; make sure the socket answers.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not answer on {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(sshd)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// ssh to this server as `user` with a key and certificate, BatchMode, running `cmd`.
    pub fn ssh(&self, user: &str, key: &Path, cert: &Path, cmd: &str) -> Output {
        run(Command::new("ssh")
            .args(ssh_client_args(self.port))
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}", cert.display()))
            .arg(format!("{user}@127.0.0.1"))
            .arg(cmd))
    }
}

/// Client options for a test sshd: no user config, no prompts, no known_hosts.
pub fn ssh_client_args(port: u16) -> Vec<String> {
    [
        "-F",
        "none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-p",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(port.to_string()))
    .collect()
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// sshd refuses to start without its privilege-separation directory.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        std::fs::create_dir_all(dir).expect(
            "/run/sshd is missing and cannot be created: run `sudo mkdir -p /run/sshd` once",
        );
    }
}

/// A temporary sshbreak home with a soft token whose PIN is set, ready for `init-ca`.
pub struct Env {
    pub dir: TempDir,
    pub home: PathBuf,
    pub token: PathBuf,
    pub pin_file: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let env = Env {
            home: dir.path().join("home"),
            token: dir.path().join("token.json"),
            pin_file,
            dir,
        };
        env.set_pin(&env.token);
        env
    }

    /// Give another soft token (e.g. a backup key) the same PIN.
    pub fn set_pin(&self, token: &Path) {
        let out = self
            .cmd_with_token(token)
            .args(["token", "set-pin"])
            .env("SSHBREAK_NEW_PIN_FILE", &self.pin_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "set-pin: {out:?}");
    }

    /// Run `sshbreak ARGS` with this env and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `sshbreak` with this env's home, soft token and PIN file.
    pub fn cmd(&self) -> Command {
        self.cmd_with_token(&self.token)
    }

    pub fn cmd_with_token(&self, token: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sshbreak"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("SSHBREAK_HOME", &self.home)
            .env("SSHBREAK_TOKEN", format!("soft:{}", token.display()))
            .env("SSHBREAK_PIN_FILE", &self.pin_file);
        c
    }

    /// `init-ca` on the env's token; panics on failure.
    pub fn init_ca(&self) -> Output {
        let out = self.cmd().arg("init-ca").output().unwrap();
        assert!(
            out.status.success(),
            "init-ca: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn bundle(&self) -> PathBuf {
        self.home.join("trusted-ca.pub")
    }
}

/// stdout and stderr of an output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
