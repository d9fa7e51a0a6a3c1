//! `sshbreak demo`: the whole break-glass workflow on this machine, in a temporary directory, with a
//! software token and a throwaway sshd on 127.0.0.1. Each step runs the real `sshbreak` command (as
//! a child process, exactly as a person would type it), shows the manual OpenSSH procedure it
//! replaces, and its time. Nothing outside the temporary directory is touched: not
//! `~/.sshbreak`, not `~/.ssh`. The sshd and the directory are removed at the end, on failure, and
//! on Ctrl-C.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Ctx, out};
use crate::cli::DemoArgs;
use crate::ui;

const SSHD: &str = "/usr/sbin/sshd";
const PIN: &str = "demo-pin-1234";

/// What has to be cleaned up, shared with the Ctrl-C handler.
#[derive(Default)]
struct Cleanup {
    /// sshd runs in the foreground (-D) as our child, so it is ours to stop from its first instant.
    sshd: Option<Child>,
    dir: Option<PathBuf>,
    keep: bool,
}

impl Cleanup {
    fn run(&mut self) {
        if let Some(mut sshd) = self.sshd.take() {
            let _ = sshd.kill();
            let _ = sshd.wait();
        }
        if let Some(dir) = self.dir.take()
            && !self.keep
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn run(args: &DemoArgs, _ctx: &Ctx) -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("sshbreak-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?
        .keep();
    let cleanup = Arc::new(Mutex::new(Cleanup {
        dir: Some(dir.clone()),
        keep: args.keep,
        ..Cleanup::default()
    }));
    {
        let cleanup = Arc::clone(&cleanup);
        // Ctrl-C: the child steps get the signal too; stop sshd, delete the files, exit 130.
        let _ = ctrlc::set_handler(move || {
            if let Ok(mut c) = cleanup.lock() {
                c.run();
            }
            eprintln!("\nsshbreak demo: interrupted; sshd stopped and temporary files removed");
            std::process::exit(130);
        });
    }
    let result = Demo::new(&dir, Arc::clone(&cleanup)).and_then(|mut d| d.run());
    if let Ok(mut c) = cleanup.lock() {
        c.run();
    }
    if args.keep {
        ui::status(format!("kept {}", dir.display()));
    }
    result.map(|()| ExitCode::SUCCESS)
}

struct Demo {
    dir: PathBuf,
    home: PathBuf,
    token: PathBuf,
    pin_file: PathBuf,
    exe: PathBuf,
    user: String,
    cleanup: Arc<Mutex<Cleanup>>,
    step: usize,
    started: Instant,
}

impl Demo {
    fn new(dir: &Path, cleanup: Arc<Mutex<Cleanup>>) -> Result<Demo> {
        let pin_file = dir.join("pin");
        crate::fsx::write_new(
            &pin_file,
            format!("{PIN}\n").as_bytes(),
            crate::fsx::PRIVATE,
        )?;
        Ok(Demo {
            dir: dir.to_path_buf(),
            home: dir.join("home"),
            token: dir.join("soft-token.json"),
            pin_file,
            exe: std::env::current_exe().context("cannot find the sshbreak executable")?,
            user: super::issue::local_user(),
            cleanup,
            step: 0,
            started: Instant::now(),
        })
    }

    fn run(&mut self) -> Result<()> {
        self.say(&format!(
            "sshbreak demo — the break-glass workflow, end to end, in {}\n\
             A software token stands in for the security key; nothing outside that folder is touched.",
            self.dir.display()
        ));

        self.step(
            "Give the (software) security key a PIN",
            "ykman fido access change-pin   # a YubiKey needs a PIN before it holds resident keys",
            &["token", "set-pin"],
        )?;
        self.step(
            "Create the CA on the key: a resident credential, its handle file and the trust bundle",
            "ssh-keygen -t ecdsa-sk -O resident -O application=ssh:sshbreak -f ca_sk\n\
             cp ca_sk.pub trusted-ca.pub",
            &["init-ca"],
        )?;
        let user = self.user.clone();
        let issued = self.step(
            &format!("Issue a 10-minute certificate for `{}` (one touch)", self.user),
            &format!(
                "ssh-keygen -t ed25519 -N '' -f emergency\n\
                 ssh-keygen -s ca_sk -I \"break-glass $(date)\" -n {} -V -5m:+10m -z $RANDOM emergency.pub",
                self.user
            ),
            &["issue", "-n", &user],
        )?;
        // `issue` prints the key, the public key and the certificate, one path a line.
        let cert_arg = String::from_utf8_lossy(&issued.stdout)
            .lines()
            .find(|l| l.ends_with("-cert.pub"))
            .context("issue printed no certificate path")?
            .to_string();
        self.step(
            "Inspect it: fields, validity, user presence, trust",
            &format!("ssh-keygen -L -f {cert_arg}   # (shows no touch flag, no trust check)"),
            &["inspect", &cert_arg],
        )?;

        let Some(sshd) = self.start_sshd()? else {
            return Ok(());
        };
        let port = sshd.to_string();
        let known_hosts = self.dir.join("known_hosts");
        let kh_opt = format!("UserKnownHostsFile={}", known_hosts.display());
        let dest = format!("{}@127.0.0.1", self.user);
        let output = self.step(
            "Connect and run `whoami` on the host (the certificate is reused: no second touch)",
            &format!(
                "ssh -i emergency -o CertificateFile=emergency-cert.pub -o IdentitiesOnly=yes -p {port} {dest} whoami"
            ),
            &[
                "connect", "-p", &port, "-F", "none", "-o", &kh_opt, "-o",
                "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", &dest, "whoami",
            ],
        )?;
        let who = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if who != self.user {
            bail!("the login answered `{who}` instead of `{}`", self.user);
        }
        self.say(&format!(
            "\nLogged in as `{who}` with a certificate from the software CA ({:.1}s in all).\n\
             For real: `sshbreak init-ca` on a YubiKey, `sshbreak enroll-host root@HOST`, and on the bad day\n\
             `sshbreak connect root@HOST`. Cleaning up: sshd stopped, {} removed.",
            self.started.elapsed().as_secs_f64(),
            self.dir.display()
        ));
        Ok(())
    }

    fn say(&self, text: &str) {
        let _ = out(format!("{text}\n"));
    }

    /// Run one `sshbreak` step, showing what it does and its manual equivalent.
    fn step(&mut self, what: &str, manual: &str, args: &[&str]) -> Result<Output> {
        self.step += 1;
        let mut text = format!("\n[{}] {what}\n", self.step);
        let _ = writeln!(text, "    $ sshbreak {}", args.join(" "));
        for line in manual.lines() {
            let _ = writeln!(text, "    # by hand: {line}");
        }
        self.say(text.trim_end());
        let t = Instant::now();
        let output = Command::new(&self.exe)
            .args(args)
            .env("SSHBREAK_HOME", &self.home)
            .env("SSHBREAK_TOKEN", format!("soft:{}", self.token.display()))
            .env("SSHBREAK_PIN_FILE", &self.pin_file)
            .env("SSHBREAK_NEW_PIN_FILE", &self.pin_file)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run sshbreak {}", args.join(" ")))?;
        let mut shown = String::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let _ = writeln!(shown, "    | {line}");
        }
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            // The soft-token warning is the demo's premise; repeating it every step is noise.
            if !line.contains("NOT a hardware key") {
                let _ = writeln!(shown, "    ! {line}");
            }
        }
        let _ = write!(shown, "    ({:.2}s)", t.elapsed().as_secs_f64());
        self.say(&shown);
        if !output.status.success() {
            bail!(
                "demo step {} failed: sshbreak {}",
                self.step,
                args.join(" ")
            );
        }
        Ok(output)
    }

    /// A throwaway sshd on 127.0.0.1 trusting the bundle; None (and a note) when sshd is missing.
    fn start_sshd(&mut self) -> Result<Option<u16>> {
        self.step += 1;
        self.say(&format!(
            "\n[{}] Start a throwaway sshd on 127.0.0.1 that trusts the bundle\n    \
             # by hand: TrustedUserCAKeys /etc/ssh/trusted-ca.pub in sshd_config, then reload sshd\n    \
             # (`sshbreak enroll-host` does this safely on real hosts)",
            self.step
        ));
        if !Path::new(SSHD).exists() {
            self.say(
                "    sshd is not installed, so the login step is skipped.\n    \
                 Install it with `sudo apt-get install openssh-server` and run `sshbreak demo` again.",
            );
            return Ok(None);
        }
        let privsep = Path::new("/run/sshd");
        if !privsep.is_dir() && std::fs::create_dir_all(privsep).is_err() {
            self.say(
                "    sshd needs its privilege-separation directory /run/sshd: create it with\n    \
                 `sudo mkdir -p /run/sshd` and run `sshbreak demo` again. The login step is skipped.",
            );
            return Ok(None);
        }
        let t = Instant::now();
        let host_key = self.dir.join("ssh_host_ed25519_key");
        let kg = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "sshbreak-demo-host",
                "-f",
            ])
            .arg(&host_key)
            .output()
            .context("cannot run ssh-keygen (install openssh-client)")?;
        if !kg.status.success() {
            bail!(
                "ssh-keygen could not make a host key: {}",
                String::from_utf8_lossy(&kg.stderr).trim()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port on 127.0.0.1")?
            .port();
        let pid_file = self.dir.join("sshd.pid");
        let log = self.dir.join("sshd.log");
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
             TrustedUserCAKeys {}\nAuthorizedKeysFile none\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\n",
            host_key.display(),
            pid_file.display(),
            self.home.join(crate::ca::BUNDLE_FILE).display()
        );
        let config_path = self.dir.join("sshd_config");
        std::fs::write(&config_path, config)?;
        // The known_hosts entry pins this sshd's host key: the demo connects with strict checking.
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{}.pub", host_key.display())))?;
        std::fs::write(
            self.dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-f")
            .arg(&config_path)
            .arg("-E")
            .arg(&log)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot run sshd")?;
        if let Ok(mut c) = self.cleanup.lock() {
            c.sshd = Some(child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = self
                .cleanup
                .lock()
                .ok()
                .and_then(|mut c| c.sshd.as_mut().and_then(|s| s.try_wait().ok().flatten()));
            if exited.is_some() || Instant::now() > deadline {
                bail!(
                    "sshd did not start listening on 127.0.0.1:{port}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.say(&format!(
            "    $ {SSHD} -D -f {} -E {}\n    | listening on 127.0.0.1:{port}\n    ({:.2}s)",
            config_path.display(),
            log.display(),
            t.elapsed().as_secs_f64()
        ));
        Ok(Some(port))
    }
}
