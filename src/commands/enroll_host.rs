//! `sshbreak enroll-host`: make hosts' sshd trust the CA bundle, locally (`--local`, as root on the
//! host), over the operator's ssh (hosts in parallel), or as a script / cloud-init / Ansible for
//! fleets managed elsewhere (`--emit`).
//!
//! The planning is `crate::host`; this file holds the effects: running sshd and ssh, reading and
//! writing files ([`LocalOps`]), the thread pool, and the per-host summary on stdout.
//!
//! Everything that can be refused is refused before any host is touched: options, the
//! destinations (checked by the drill's own [`drill::parse_destination`], which with `--verify`
//! also requires the user the drill certificate will name), and the hosts file. Remote hosts are
//! reached with the operator's ssh (their config, or the one `-F` names) under defaults that keep a
//! dead host from stalling the run (ConnectTimeout, ServerAlive*) and a hard time limit per host
//! that stops ssh with its whole process group ([`drill::run_bounded`]).
//!
//! Test-only: `SSHBREAK_TEST_FAIL_AFTER_WRITE=1` makes the transaction fail after it has written
//! and checked the files, so that tests can watch the rollback (locally and in the remote script).
//! It never makes a change stick; it only makes a run fail.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Ctx, drill, hinted, out, usage};
use crate::ca;
use crate::cli::EnrollHostArgs;
use crate::fsx;
use crate::host::{self, CaKey, FileState, HostOps, Plan, Request, ScriptOptions, Snapshot};

const FAIL_AFTER_WRITE_ENV: &str = "SSHBREAK_TEST_FAIL_AFTER_WRITE";
/// Longest time one remote host may take, its probes and the change together. Far above what a
/// working host needs (seconds), short enough that one hung ProxyCommand or jump host does not hold
/// a fleet run hostage. Stopping ssh in the middle of a change leaves the `.sshbreak-bak` copies,
/// which the next run reports.
const HOST_TIME_LIMIT: Duration = Duration::from_secs(120);
/// ssh options sshbreak sets for its own connections, after the user's `-o` (ssh keeps the first
/// value of an option, so a user's own ConnectTimeout or BatchMode wins): no prompts in a parallel
/// run, give up on a host that does not answer in 10 s, and on a connection silent for 45 s.
const SSH_DEFAULTS: [&str; 4] = [
    "BatchMode=yes",
    "ConnectTimeout=10",
    "ServerAliveInterval=15",
    "ServerAliveCountMax=3",
];

pub fn run(args: &EnrollHostArgs, ctx: &Ctx) -> Result<ExitCode> {
    let targets = check_args(args)?;
    let keys = bundle_keys(ctx)?;
    if let Some(format) = &args.emit {
        let req = Request {
            keys: keys.clone(),
            config: args.sshd_config.clone(),
            ca_dest: args.ca_dest.clone(),
            remove: false,
        };
        host::check_request(&req).map_err(usage)?;
        let text = match format.as_str() {
            "shell" => host::emit_shell(&keys, &args.sshd_config, &args.ca_dest, !args.no_reload),
            "cloud-init" => {
                host::emit_cloud_init(&keys, &args.sshd_config, &args.ca_dest, !args.no_reload)
            }
            _ => host::emit_ansible(&keys, &args.sshd_config, &args.ca_dest, !args.no_reload),
        };
        out(text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let settings = Settings {
        reload: !args.no_reload,
        dry_run: args.dry_run,
        remove: args.remove,
        fail_after_write: std::env::var_os(FAIL_AFTER_WRITE_ENV).is_some_and(|v| v == "1"),
    };
    let reports = if args.local {
        let req = Request {
            keys,
            config: args.sshd_config.clone(),
            ca_dest: args.ca_dest.clone(),
            remove: args.remove,
        };
        host::check_request(&req).map_err(usage)?;
        let report = enroll_local(&req, &settings);
        print_report("local", &report)?;
        vec![report]
    } else {
        for t in &targets {
            host::check_request(&t.request(&keys, args.remove)).map_err(usage)?;
        }
        let mut reports = run_remote(args, &targets, &keys, &settings)?;
        if args.verify {
            verify(args, ctx, &targets, &mut reports)?;
        }
        reports
    };
    let bad = reports.iter().filter(|r| !r.outcome.is_good()).count();
    if bad > 0 {
        if reports.len() > 1 {
            eprintln!(
                "sshbreak: {bad} of {} host(s) did not end {}",
                reports.len(),
                if args.remove { "removed" } else { "enrolled" }
            );
        }
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuse what makes no sense before anything runs, and return the remote hosts, each checked
/// (with `--verify`: checked as the drill will check it, user included). Empty for `--local` and
/// `--emit`.
fn check_args(args: &EnrollHostArgs) -> Result<Vec<Target>> {
    if args.verify {
        if args.local || args.emit.is_some() {
            return Err(usage(
                "--verify drills over ssh: run enroll-host from your workstation, or `sshbreak drill` against this host",
            ));
        }
        if args.dry_run || args.remove || args.no_reload {
            return Err(usage(
                "--verify needs a real enrollment with a reload; drop --dry-run, --remove and --no-reload",
            ));
        }
    }
    let remote_only = args.sudo
        || args.port.is_some()
        || !args.ssh_options.is_empty()
        || args.ssh_config.is_some();
    if args.emit.is_some() {
        if args.dry_run || args.remove || !args.hosts.is_empty() || args.hosts_file.is_some() {
            return Err(usage(
                "--emit prints the change for other tools; it takes no hosts, --dry-run or --remove",
            ));
        }
        if remote_only {
            return Err(usage(
                "--sudo, -p, -o and -F are for hosts sshbreak reaches over ssh; --emit only prints the change",
            ));
        }
        return Ok(Vec::new());
    }
    if args.local {
        if remote_only {
            return Err(usage(
                "--sudo, -p, -o and -F are for remote hosts; --local runs on this machine",
            ));
        }
        return Ok(Vec::new());
    }
    if args.hosts.is_empty() && args.hosts_file.is_none() {
        return Err(usage(
            "name the hosts to enroll ([USER@]HOST... or --hosts-file FILE), or pass --local on the host itself",
        ));
    }
    if args.jobs == 0 {
        return Err(usage("-j must be at least 1"));
    }
    for o in &args.ssh_options {
        drill::check_ssh_option(o).map_err(usage)?;
    }
    if let Some(f) = &args.ssh_config {
        drill::check_ssh_config(f).map_err(usage)?;
    }
    targets(args)
}

/// The bundle's keys, deduplicated: what every host must trust.
fn bundle_keys(ctx: &Ctx) -> Result<Vec<CaKey>> {
    let path = ca::bundle_path(&ctx.home);
    if !path.exists() {
        return Err(hinted(
            format!("no trust bundle at {}", path.display()),
            "run `sshbreak init-ca` first (or pass --home)",
        ));
    }
    let keys = ca::read_bundle(&path)?
        .iter()
        .map(CaKey::from_public)
        .collect::<Result<Vec<_>>>()?;
    if keys.is_empty() {
        return Err(hinted(
            format!("the trust bundle {} holds no CA key", path.display()),
            "run `sshbreak init-ca` first",
        ));
    }
    Ok(host::dedup_keys(&keys))
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    reload: bool,
    dry_run: bool,
    remove: bool,
    fail_after_write: bool,
}

/// How one host ended.
#[derive(Debug)]
enum Outcome {
    Enrolled(Vec<String>),
    AlreadyEnrolled,
    Removed(Vec<String>),
    NotEnrolled,
    /// --dry-run: the diff to show and what would be done.
    WouldChange {
        diff: String,
        actions: Vec<String>,
    },
    Refused(String),
    Failed(String),
}

impl Outcome {
    fn is_good(&self) -> bool {
        !matches!(self, Outcome::Refused(_) | Outcome::Failed(_))
    }
}

#[derive(Debug)]
struct Report {
    outcome: Outcome,
    notes: Vec<String>,
}

fn report(outcome: Outcome) -> Report {
    Report {
        outcome,
        notes: Vec::new(),
    }
}

fn print_report(name: &str, r: &Report) -> Result<()> {
    let mut text = String::new();
    let line = match &r.outcome {
        Outcome::Enrolled(d) => format!("enrolled ({})", d.join("; ")),
        Outcome::AlreadyEnrolled => "already enrolled".to_string(),
        Outcome::Removed(d) => format!("removed ({})", d.join("; ")),
        Outcome::NotEnrolled => "not enrolled (nothing to remove)".to_string(),
        Outcome::WouldChange { diff, actions } => {
            text.push_str(diff);
            format!("would {} (dry run, nothing changed)", actions.join("; "))
        }
        Outcome::Refused(why) => format!("refused: {why}"),
        Outcome::Failed(why) => format!("failed: {why}"),
    };
    text.push_str(&format!("{name}: {line}\n"));
    for n in &r.notes {
        text.push_str(&format!("{name}:   note: {n}\n"));
    }
    out(text)
}

/// The outcome for a plan that needs no change, or a dry run's diff.
fn before_apply(plan: &Plan, settings: &Settings) -> Option<Outcome> {
    if plan.is_noop() {
        return Some(if settings.remove {
            Outcome::NotEnrolled
        } else {
            Outcome::AlreadyEnrolled
        });
    }
    if settings.dry_run {
        let diff = plan.changes.iter().map(host::unified_diff).collect();
        return Some(Outcome::WouldChange {
            diff,
            actions: plan.actions.clone(),
        });
    }
    None
}

fn done(plan: &Plan, settings: &Settings, mut details: Vec<String>) -> Outcome {
    let mut all = plan.actions.clone();
    all.append(&mut details);
    if settings.remove {
        Outcome::Removed(all)
    } else {
        Outcome::Enrolled(all)
    }
}

/// `--verify`: one drill run (one touch) against every host that ended enrolled; a host whose drill
/// does not pass counts as failed.
fn verify(
    args: &EnrollHostArgs,
    ctx: &Ctx,
    targets: &[Target],
    reports: &mut [Report],
) -> Result<()> {
    let enrolled: Vec<String> = targets
        .iter()
        .zip(reports.iter())
        .filter(|(_, r)| r.outcome.is_good())
        .map(|(t, _)| t.dest.clone())
        .collect();
    if enrolled.is_empty() {
        return Ok(());
    }
    let opts = drill::DrillOptions {
        port: args.port,
        ssh_options: args.ssh_options.clone(),
        jobs: args.jobs,
        ssh_config: args.ssh_config.clone(),
        ..drill::DrillOptions::default()
    };
    let results = drill::drill_hosts(ctx, &enrolled, &opts)?;
    for (t, r) in targets.iter().zip(reports.iter_mut()) {
        let Some(d) = results.iter().find(|d| d.dest == t.dest) else {
            continue;
        };
        if d.outcome == drill::Outcome::Pass {
            out(format!("{}: drill passed\n", t.dest))?;
        } else {
            let why = format!(
                "enrolled, but the drill did not pass ({}); see `sshbreak drill {}`",
                d.describe(),
                t.dest
            );
            out(format!("{}: failed: {why}\n", t.dest))?;
            r.outcome = Outcome::Failed(why);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Local

fn enroll_local(req: &Request, settings: &Settings) -> Report {
    let mut ops = LocalOps::new(&req.config);
    let version_text = ops.version_text();
    let snap = match host::read_snapshot(&mut ops, version_text, req) {
        Ok(s) => s,
        Err(e) => return report(Outcome::Failed(format!("{e:#}"))),
    };
    if let Err(why) = host::preflight(&snap, req) {
        return report(Outcome::Refused(why));
    }
    let plan = match host::plan(&snap, req) {
        Ok(p) => p,
        Err(why) => return report(Outcome::Refused(why)),
    };
    let notes = plan.notes.clone();
    if let Some(outcome) = before_apply(&plan, settings) {
        return Report { outcome, notes };
    }
    let outcome = match host::apply(&mut ops, &plan, req, settings.fail_after_write) {
        Err(why) => Outcome::Failed(not_root_hint(why)),
        Ok(dump) if settings.reload => match reload_local(&req.config, &dump) {
            Ok(msg) => done(&plan, settings, vec![msg]),
            Err(msg) => Outcome::Failed(format!(
                "the change is in place and valid, but {msg}; reload sshd by hand"
            )),
        },
        Ok(_) => done(
            &plan,
            settings,
            vec!["sshd not reloaded (--no-reload)".into()],
        ),
    };
    Report { outcome, notes }
}

fn not_root_hint(why: String) -> String {
    if why.contains("Permission denied") && !is_root() {
        format!("{why} (run as root, e.g. with sudo)")
    } else {
        why
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The machine this runs on, for [`host::apply`].
pub struct LocalOps {
    config: String,
    sshd: PathBuf,
}

impl LocalOps {
    pub fn new(config: &str) -> LocalOps {
        LocalOps {
            config: config.to_string(),
            sshd: find_sshd(),
        }
    }

    fn sshd(&self, flag: &str) -> Result<std::process::Output, String> {
        Command::new(&self.sshd)
            .arg(flag)
            .arg("-f")
            .arg(&self.config)
            // sshd makes relative paths absolute against its working directory; the daemon runs in /.
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}); is openssh-server installed?",
                    self.sshd.display()
                )
            })
    }

    fn version_text(&self) -> String {
        let run = |cmd: &Path| {
            Command::new(cmd)
                .arg("-V")
                .stdin(Stdio::null())
                .output()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stderr),
                        String::from_utf8_lossy(&o.stdout)
                    )
                })
                .unwrap_or_default()
        };
        let text = run(&self.sshd);
        if host::parse_openssh_version(&text).is_some() {
            text
        } else {
            run(Path::new("ssh"))
        }
    }
}

/// sshd usually lives in an sbin directory that a normal PATH lacks.
fn find_sshd() -> PathBuf {
    let mut dirs: Vec<PathBuf> = ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("sshd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/sshd"))
}

fn combined(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

impl HostOps for LocalOps {
    fn read(&mut self, path: &str) -> Result<FileState> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Absent),
            Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
        };
        if meta.file_type().is_symlink() {
            return Ok(FileState::Unusable(
                "a symbolic link; name the real file".into(),
            ));
        }
        if !meta.is_file() {
            return Ok(FileState::Unusable("not a regular file".into()));
        }
        let bytes = fsx::read_small(Path::new(path))?;
        Ok(match String::from_utf8(bytes) {
            Ok(t) if !t.contains('\0') => FileState::Text(t),
            _ => FileState::Unusable("not UTF-8 text".into()),
        })
    }

    fn exists(&mut self, path: &str) -> Result<bool> {
        match fs::symlink_metadata(path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look at {path}")),
        }
    }

    fn is_dir(&mut self, path: &str) -> Result<bool> {
        // Followed like sshd's glob follows it: a symlink to a folder is a folder.
        match fs::metadata(path) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look at {path}")),
        }
    }

    fn write(&mut self, path: &str, text: &str) -> Result<()> {
        let p = Path::new(path);
        let old = fs::metadata(p).ok();
        let mode = old
            .as_ref()
            .map_or(fsx::PUBLIC, |m| m.permissions().mode() & 0o7777);
        fsx::write_atomic(p, text.as_bytes(), mode)?;
        // The temporary file was created under our umask and as our user: give the result the
        // original's mode and owner (a new file: 0644, owned by whoever runs this — root).
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {path}"))?;
        if let Some(m) = old {
            std::os::unix::fs::chown(p, Some(m.uid()), Some(m.gid()))
                .with_context(|| format!("cannot set the owner of {path}"))?;
        }
        Ok(())
    }

    fn copy(&mut self, from: &str, to: &str) -> Result<()> {
        fs::copy(from, to).with_context(|| format!("cannot copy {from} to {to}"))?;
        let m = fs::metadata(from).with_context(|| format!("cannot read {from}"))?;
        std::os::unix::fs::chown(to, Some(m.uid()), Some(m.gid()))
            .with_context(|| format!("cannot set the owner of {to}"))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        fs::rename(from, to).with_context(|| format!("cannot rename {from} to {to}"))
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {path}")),
        }
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        let o = self.sshd("-t")?;
        if o.status.success() {
            Ok(())
        } else {
            Err(combined(&o))
        }
    }

    fn dump(&mut self) -> std::result::Result<String, String> {
        let o = self.sshd("-T")?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(combined(&o))
        }
    }
}

/// Run one reload command: `done` on success, else the command and its first output line.
fn run_reload(program: &str, args: &[&str], done: String) -> std::result::Result<String, String> {
    let o = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program} ({e})"))?;
    if o.status.success() {
        Ok(done)
    } else {
        Err(format!(
            "{program} {} failed ({})",
            args.join(" "),
            host::first_line(&combined(&o))
        ))
    }
}

/// Reload without dropping sessions: systemd for the system configuration when it runs sshd,
/// otherwise SIGHUP to the sshd in the PidFile (sshd re-executes itself and keeps its children).
fn reload_local(config: &str, dump: &str) -> std::result::Result<String, String> {
    if config == host::DEFAULT_CONFIG && Path::new("/run/systemd/system").is_dir() {
        for unit in ["ssh", "sshd"] {
            let active = Command::new("systemctl")
                .args(["is-active", "--quiet", unit])
                .status()
                .is_ok_and(|s| s.success());
            if active {
                let done = format!("reloaded sshd (systemctl reload {unit})");
                return run_reload("systemctl", &["reload", unit], done);
            }
        }
    }
    let pid_file = host::dump_value(dump, "pidfile").unwrap_or("none");
    let pid = fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
    if let Some(pid) = pid.filter(|&p| p > 1 && is_sshd(p)) {
        let done = format!("reloaded sshd (SIGHUP to pid {pid})");
        return run_reload("kill", &["-HUP", &pid.to_string()], done);
    }
    Ok(format!(
        "sshd is not running (no live sshd in {pid_file}); it reads the new configuration when it starts"
    ))
}

/// A stale PidFile may name a pid that now belongs to something else: only signal an sshd.
fn is_sshd(pid: u32) -> bool {
    if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
        return comm.trim() == "sshd";
    }
    Command::new("ps")
        .args(["-p", &pid.to_string(), "-o", "comm="])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "sshd")
}

// ---------------------------------------------------------------------------------------------
// Remote

/// One host to work on, with the per-host overrides a hosts file may give.
#[derive(Clone, Debug)]
struct Target {
    dest: String,
    config: String,
    ca_dest: String,
}

impl Target {
    fn request(&self, keys: &[CaKey], remove: bool) -> Request {
        Request {
            keys: keys.to_vec(),
            config: self.config.clone(),
            ca_dest: self.ca_dest.clone(),
            remove,
        }
    }
}

fn targets(args: &EnrollHostArgs) -> Result<Vec<Target>> {
    // --verify drills each host as the user its destination names: require it now, before any
    // host is changed, rather than have the drill refuse after the enrollment.
    let rule = if args.verify {
        drill::UserPart::Required
    } else {
        drill::UserPart::Optional
    };
    let check = |dest: &str| -> std::result::Result<(), String> {
        drill::parse_destination(dest, rule)
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    let mut out = Vec::new();
    for dest in &args.hosts {
        check(dest).map_err(usage)?;
        out.push(Target {
            dest: dest.clone(),
            config: args.sshd_config.clone(),
            ca_dest: args.ca_dest.clone(),
        });
    }
    if let Some(file) = &args.hosts_file {
        let bytes = fsx::read_small(file)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| usage(format!("{} is not UTF-8 text", file.display())))?;
        out.extend(
            parse_hosts_file(&text, &args.sshd_config, &args.ca_dest, &check)
                .map_err(|e| usage(format!("{}: {e}", file.display())))?,
        );
    }
    if out.is_empty() {
        return Err(usage("no hosts to enroll: the hosts file names none"));
    }
    Ok(out)
}

/// Lines `DEST [sshd_config=PATH] [ca_dest=PATH]` (comments and blank lines as the drill's hosts
/// files), each DEST passed through `check`.
fn parse_hosts_file(
    text: &str,
    config: &str,
    ca_dest: &str,
    check: &dyn Fn(&str) -> std::result::Result<(), String>,
) -> std::result::Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for (no, line) in drill::parse_hosts_list(text) {
        let mut fields = line.split_whitespace();
        let dest = fields.next().unwrap_or_default();
        check(dest).map_err(|e| format!("line {no}: {e}"))?;
        let mut t = Target {
            dest: dest.to_string(),
            config: config.to_string(),
            ca_dest: ca_dest.to_string(),
        };
        for f in fields {
            match f.split_once('=') {
                Some(("sshd_config", v)) => t.config = v.to_string(),
                Some(("ca_dest", v)) => t.ca_dest = v.to_string(),
                _ => {
                    return Err(format!(
                        "line {no}: `{f}` is not `sshd_config=PATH` or `ca_dest=PATH`"
                    ));
                }
            }
        }
        out.push(t);
    }
    Ok(out)
}

fn run_remote(
    args: &EnrollHostArgs,
    targets: &[Target],
    keys: &[CaKey],
    settings: &Settings,
) -> Result<Vec<Report>> {
    let next = Mutex::new(0usize);
    let results: Mutex<BTreeMap<usize, Report>> = Mutex::new(BTreeMap::new());
    let print_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let workers = args.jobs.min(targets.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(t) = targets.get(i) else { break };
                    let r = enroll_remote(args, t, keys, settings);
                    // One host's block at a time, as soon as it is known.
                    if let Err(e) = print_report(&t.dest, &r) {
                        print_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(i, r);
                }
            });
        }
    });
    if let Some(e) = print_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect())
}

/// The ssh command line after the program name:
/// `[-F CONFIG] [-p PORT] [-o OPT]... -o <SSH_DEFAULTS>... -- DEST [sudo -n] sh -s`.
/// The user's options come before the defaults because ssh keeps the first value of an option.
fn ssh_args(args: &EnrollHostArgs, dest: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(config) = &args.ssh_config {
        out.extend(["-F".to_string(), config.clone()]);
    }
    if let Some(port) = args.port {
        out.extend(["-p".to_string(), port.to_string()]);
    }
    for o in args
        .ssh_options
        .iter()
        .map(String::as_str)
        .chain(SSH_DEFAULTS)
    {
        out.extend(["-o".to_string(), o.to_string()]);
    }
    out.extend(["--".to_string(), dest.to_string()]);
    if args.sudo {
        out.extend(["sudo".to_string(), "-n".to_string()]);
    }
    out.extend(["sh".to_string(), "-s".to_string()]);
    out
}

/// Run `script` on `dest` through `sh -s`, stopping ssh at `deadline`; its stdout, or one line
/// saying what went wrong.
fn ssh(
    args: &EnrollHostArgs,
    dest: &str,
    script: &str,
    deadline: Instant,
) -> std::result::Result<String, String> {
    let limit = deadline.saturating_duration_since(Instant::now());
    let stopped = || {
        format!(
            "ssh to {dest} did not finish within {}s, the limit per host, and was stopped; check that the host answers, then run again (a change cut short leaves .sshbreak-bak copies, which the next run reports)",
            HOST_TIME_LIMIT.as_secs()
        )
    };
    if limit.is_zero() {
        return Err(stopped());
    }
    let mut cmd = Command::new("ssh");
    cmd.args(ssh_args(args, dest));
    let o = drill::run_bounded(&mut cmd, Some(script.as_bytes()), limit)
        .map_err(|e| format!("{e}; is openssh-client installed?"))?;
    if o.timed_out {
        return Err(stopped());
    }
    if o.code == Some(255) || !o.stdout.contains("@@sshbreak ") {
        let last = o
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("no message");
        let hint = if args.sudo && last.contains("sudo") {
            " (sudo needs NOPASSWD for a non-interactive run)"
        } else {
            ""
        };
        return Err(format!("ssh to {dest}: {last}{hint}"));
    }
    Ok(o.stdout)
}

fn probe(
    args: &EnrollHostArgs,
    t: &Target,
    paths: &[String],
    dirs: &[String],
    deadline: Instant,
) -> std::result::Result<Snapshot, String> {
    let out = ssh(
        args,
        &t.dest,
        &host::probe_script(&t.config, paths, dirs),
        deadline,
    )?;
    host::parse_probe(&out)
}

fn enroll_remote(args: &EnrollHostArgs, t: &Target, keys: &[CaKey], settings: &Settings) -> Report {
    let deadline = Instant::now() + HOST_TIME_LIMIT;
    let req = t.request(keys, settings.remove);
    // Read up front what the plan usually needs, so most hosts take one probe.
    let config_dir = t.config.rsplit_once('/').map_or("", |(d, _)| d);
    let mut dirs = vec![
        format!("{config_dir}/sshd_config.d"),
        format!("{}/sshd_config.d", host::SSHDIR),
    ];
    dirs.dedup();
    let mut first = vec![t.ca_dest.clone()];
    first.extend(dirs.iter().map(|d| format!("{d}/{}", host::DROP_IN)));
    let mut snap = match probe(args, t, &first, &dirs, deadline) {
        Ok(s) => s,
        Err(e) => return report(Outcome::Failed(e)),
    };
    if let Err(why) = host::preflight(&snap, &req) {
        return report(Outcome::Refused(why));
    }
    let (files, dirs) = host::still_needed(&snap, &req);
    if !files.is_empty() || !dirs.is_empty() {
        match probe(args, t, &files, &dirs, deadline) {
            Ok(more) => {
                snap.files.extend(more.files);
                snap.dirs.extend(more.dirs);
            }
            Err(e) => return report(Outcome::Failed(e)),
        }
    }
    let plan = match host::plan(&snap, &req) {
        Ok(p) => p,
        Err(why) => return report(Outcome::Refused(why)),
    };
    let notes = plan.notes.clone();
    if let Some(outcome) = before_apply(&plan, settings) {
        return Report { outcome, notes };
    }
    let script = host::apply_script(
        &plan,
        &req,
        ScriptOptions {
            reload: settings.reload,
            fail_after_write: settings.fail_after_write,
        },
    );
    let outcome = match ssh(args, &t.dest, &script, deadline) {
        Err(e) => Outcome::Failed(e),
        Ok(out) => match host::parse_apply_output(&out) {
            host::ScriptResult::Ok { notes } => {
                let details = if settings.reload {
                    notes
                } else {
                    vec!["sshd not reloaded (--no-reload)".into()]
                };
                done(&plan, settings, details)
            }
            host::ScriptResult::Refused(why) => Outcome::Refused(why),
            host::ScriptResult::Failed(why) => {
                let hint = if snap.uid.is_some_and(|u| u != 0) && why.contains("cannot") {
                    " (not root on the host: try --sudo)"
                } else {
                    ""
                };
                Outcome::Failed(format!("{why}{hint}"))
            }
        },
    };
    Report { outcome, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dest: &str) -> std::result::Result<(), String> {
        drill::parse_destination(dest, drill::UserPart::Optional)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn args(extra: &[&str]) -> EnrollHostArgs {
        use clap::Parser as _;
        let mut argv = vec!["sshbreak", "enroll-host"];
        argv.extend(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::EnrollHost(a) => a,
            other => panic!("not enroll-host: {other:?}"),
        }
    }

    #[test]
    fn the_users_ssh_options_come_before_the_timeouts_so_they_win() {
        let a = args(&[
            "-F",
            "none",
            "-p",
            "2222",
            "-o",
            "ConnectTimeout=60",
            "--sudo",
            "root@web1",
        ]);
        let argv = ssh_args(&a, "root@web1");
        let pos = |s: &str| argv.iter().position(|a| a == s).unwrap_or(usize::MAX);
        assert_eq!(argv[..4], ["-F", "none", "-p", "2222"]);
        assert!(
            pos("ConnectTimeout=60") < pos("ConnectTimeout=10"),
            "{argv:?}"
        );
        for must in SSH_DEFAULTS {
            assert!(pos(must) < pos("--"), "{must} in {argv:?}");
        }
        assert_eq!(
            argv[argv.len() - 6..],
            ["--", "root@web1", "sudo", "-n", "sh", "-s"]
        );
    }

    #[test]
    fn verify_checks_every_destination_for_a_user_before_anything_runs() {
        let err = check_args(&args(&["--verify", "root@a", "127.0.0.1"])).unwrap_err();
        assert!(
            err.to_string()
                .contains("no user in destination `127.0.0.1`"),
            "{err}"
        );
        assert!(err.downcast_ref::<crate::commands::UsageError>().is_some());
        assert_eq!(check_args(&args(&["127.0.0.1"])).unwrap().len(), 1);
        assert_eq!(
            check_args(&args(&["--verify", "ssh://root@a:2222"]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn hosts_file_lines_take_overrides_and_refuse_options() {
        let t = parse_hosts_file(
            "# fleet\n\nroot@a  sshd_config=/x/sshd_config ca_dest=/x/ca.pub # lab\nssh://b:2222\n",
            "/etc/ssh/sshd_config",
            "/etc/ssh/ca.pub",
            &check,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].dest, "root@a");
        assert_eq!(t[0].config, "/x/sshd_config");
        assert_eq!(t[0].ca_dest, "/x/ca.pub");
        assert_eq!(t[1].config, "/etc/ssh/sshd_config");
        let err = parse_hosts_file("-oProxyCommand=x\n", "/c", "/d", &check).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(parse_hosts_file("a port=2\n", "/c", "/d", &check).is_err());
    }
}
