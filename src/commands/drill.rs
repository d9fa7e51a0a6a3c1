//! `sshbreak drill`: prove, before the emergency, that the break-glass path works on each host.
//!
//! One certificate is issued for the whole run (one touch), through the same [`issue::issue`] path
//! as `sshbreak issue`, so it is in the audit log like any other. It is deliberately useless for
//! anything but a test: valid for 60 seconds, critical option `force-command=true`, and no
//! extensions (`clear`: no pty, no forwarding, so it cannot even hold a tunnel open). The key and
//! certificate live in a private temporary directory that is removed at the end; they never go
//! to `<home>/certs`, where `connect` looks for certificates to reuse.
//!
//! Each host is tried with the user's normal ssh configuration (or the one `-F` names; `-F none`
//! for none) plus options that make the result mean "the CA certificate logged in": batch mode,
//! only our identity, no agent, no connection sharing (a live ControlMaster would skip
//! authentication altogether). Our options come first on the command line and ssh keeps the first
//! value it sees, so neither `-o` nor the ssh config can weaken them. The command requested is `false`: the certificate forces `true`, so exit status 0
//! proves the forced command ran — if some other key of the user's logged in instead, the host runs
//! `false` and the drill reports it rather than a false pass.
//!
//! Destinations must name the account (`USER@HOST` or `ssh://USER@HOST[:PORT]`): the certificate
//! is made for those accounts before anything connects, and guessing (the local user name, or the
//! `User` of an ssh config) would drill an account nobody will use in an emergency. Anything that
//! ssh could read as an option, or that a `ProxyCommand` could expand into shell syntax, is
//! refused before the touch. `enroll-host` checks its destinations, `-o` options and hosts-file
//! lines with the same functions here ([`parse_destination`], [`check_ssh_option`],
//! [`parse_hosts_list`]) and runs its ssh under the same hard time limit ([`run_bounded`]).
//!
//! Output: one line per host, in input order, as each becomes known:
//! `OUTCOME  DESTINATION  SECONDS  [what ssh said]`, outcome one of `pass`, `refused`,
//! `unreachable`, `host-key problem`, `failed`. Exit status 1 when any host did not pass.
//!
//! Passes are recorded in `<home>/drills.json` (destination as given → Unix time of the last
//! pass). `--status` lists them and flags those older than `--max-age-days` as `STALE`, exiting 1
//! when any is stale or nothing was ever recorded, so `sshbreak drill --status` can run from cron
//! or a monitoring check and alert on its exit status alone.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::issue::{self, IssueParams};
use super::{Ctx, hinted, out, usage};
use crate::cli::{CertArgs, DrillArgs};
use crate::{fsx, policy, ui};

/// Validity of the drill certificate: long enough for a batch of hosts, short enough that a copy
/// is worthless by the time anyone finds it.
pub const DRILL_VALIDITY: &str = "60s";
/// Record of the last good drill per destination, in the home.
pub const DRILLS_FILE: &str = "drills.json";
/// Key id suffix and audit-log reason, so sshd logs and the audit log tell drills from real use.
pub const DRILL_REASON: &str = "drill";
/// What the certificate may do: run `true`, nothing else (no pty, no forwarding).
const CERT_OPTIONS: [&str; 2] = ["clear", "force-command=true"];
/// Asked for, and overridden by the certificate's forced `true`; see the module docs.
const REMOTE_COMMAND: &str = "false";
/// `--status` flags drills older than this many days: a monthly drill catches a host whose trust
/// was lost in a rebuild before an emergency does.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 30;
/// Default hosts tried at the same time.
pub const DEFAULT_JOBS: usize = 8;
/// Default ConnectTimeout, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Extra time, beyond two connect timeouts (a jump host and the target), before a hanging ssh is
/// stopped: ConnectTimeout does not cover authentication or the session.
const HARD_LIMIT_SLACK_SECS: u64 = 20;
/// How often a waiting worker looks at its ssh process.
const POLL: Duration = Duration::from_millis(10);
/// Most of ssh's stderr read per host: enough for every message ssh prints, bounded against a
/// ProxyCommand that floods it.
const STDERR_LIMIT: u64 = 64 * 1024;
/// Most of a program's stdout read by [`run_bounded`]: `enroll-host`'s probe sends a host's
/// configuration files as hex, a few megabytes at the very most.
const STDOUT_LIMIT: u64 = 32 * 1024 * 1024;
/// Longest piece of ssh's output shown in a result line.
const DETAIL_MAX_CHARS: usize = 200;
/// Longest host name accepted (DNS names are at most 253 characters).
const MAX_HOST_LEN: usize = 253;
const DAY_SECS: u64 = 86_400;

/// How to reach the hosts: the ssh side of a drill.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    /// `ssh -p`; a port in an `ssh://` destination is overridden by it, as in ssh.
    pub port: Option<u16>,
    /// Extra `ssh -o` options, after the drill's own (which therefore win).
    pub ssh_options: Vec<String>,
    /// Hosts tried at the same time (at least 1).
    pub jobs: usize,
    /// ssh ConnectTimeout in seconds (at least 1).
    pub timeout: u64,
    /// `ssh -F`: the ssh configuration file to read instead of ~/.ssh/config (`none`: none).
    /// ssh finds `~` through the passwd entry, not $HOME, so this is the only way to keep a
    /// user's own configuration out of a run.
    pub ssh_config: Option<String>,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            port: None,
            ssh_options: Vec::new(),
            jobs: DEFAULT_JOBS,
            timeout: DEFAULT_TIMEOUT_SECS,
            ssh_config: None,
        }
    }
}

/// What happened on one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in with the drill certificate and ran the forced command.
    Pass,
    /// sshd answered but did not accept the certificate: the CA is not trusted, the principal is
    /// not allowed, or (host clock far ahead) the certificate is already expired there.
    Refused,
    /// No SSH conversation: connection refused or timed out, no route, name not resolved, or the
    /// server closed the connection before the SSH banner.
    Unreachable,
    /// The host key is unknown (batch mode cannot ask) or differs from known_hosts.
    HostKey,
    /// Anything else; the result's `detail` says what ssh said.
    Failed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::HostKey => "host-key problem",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The result for one destination.
#[derive(Clone, Debug)]
pub struct HostResult {
    /// The destination as given.
    pub dest: String,
    pub outcome: Outcome,
    /// Wall-clock time of the attempt.
    pub seconds: f64,
    /// What ssh said that decided the outcome (empty for a pass).
    pub detail: String,
}

impl HostResult {
    /// `pass`, `refused`, …, or `failed: <what ssh said>`.
    pub fn describe(&self) -> String {
        match self.outcome {
            Outcome::Failed => format!("failed: {}", self.detail),
            o => o.label().to_string(),
        }
    }
}

pub fn run(args: &DrillArgs, ctx: &Ctx) -> Result<ExitCode> {
    if args.status {
        return run_status(args, ctx);
    }
    if args.max_age_days.is_some() {
        return Err(usage("--max-age-days goes with --status"));
    }
    let mut targets = args.hosts.clone();
    if let Some(file) = &args.hosts_file {
        targets.extend(read_hosts_file(file)?);
    }
    if targets.is_empty() {
        return Err(usage(
            "no hosts to drill: name them as USER@HOST or ssh://USER@HOST:PORT, or give --hosts-file FILE (or use --status)",
        ));
    }
    let opts = DrillOptions {
        port: args.port,
        ssh_options: args.ssh_options.clone(),
        jobs: args.jobs,
        timeout: args.timeout,
        ssh_config: args.ssh_config.clone(),
    };

    // Lines are printed as soon as every host before them is done; the first write error (a
    // closed stdout) is kept and returned once the run is over.
    let width = targets.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    let print_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let print = |r: &HostResult| {
        if let Err(e) = out(format!("{}\n", result_line(r, width)))
            && let Ok(mut slot) = print_error.lock()
        {
            slot.get_or_insert(e);
        }
    };
    let results = drill_hosts_with(ctx, &targets, &opts, &print)?;
    if let Some(e) = print_error.into_inner().ok().flatten() {
        return Err(e);
    }

    let failed = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .count();
    out(format!(
        "{} of {} host{} passed the drill\n",
        results.len() - failed,
        results.len(),
        plural(results.len())
    ))?;
    for hint in hints(&results) {
        ui::status(hint);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Drill `targets` (destinations as `USER@HOST` or `ssh://USER@HOST[:PORT]`) with one
/// 60-second certificate, record the passes in `<home>/drills.json`, and return one result per
/// distinct destination, in input order. Errors (bad destination or option, no ssh, no CA, no
/// touch) come before any host is contacted.
pub fn drill_hosts(ctx: &Ctx, targets: &[String], opts: &DrillOptions) -> Result<Vec<HostResult>> {
    drill_hosts_with(ctx, targets, opts, &|_| {})
}

/// [`drill_hosts`], calling `on_result` for each host in input order as soon as it and every host
/// before it are done (calls are serialised).
pub fn drill_hosts_with(
    ctx: &Ctx,
    targets: &[String],
    opts: &DrillOptions,
    on_result: &(dyn Fn(&HostResult) + Sync),
) -> Result<Vec<HostResult>> {
    // Everything that can be refused is refused before the touch.
    check_options(opts)?;
    let mut dests: Vec<Destination> = Vec::new();
    for t in targets {
        let d = parse_destination(t, UserPart::Required).map_err(|e| usage(format!("{e:#}")))?;
        if !dests.iter().any(|x| x.text == d.text) {
            dests.push(d);
        }
    }
    if dests.is_empty() {
        return Err(usage("no hosts to drill"));
    }
    let users: Vec<&str> = dests.iter().filter_map(|d| d.user.as_deref()).collect();
    let principals =
        policy::parse_principals(&users.join(",")).map_err(|e| usage(format!("{e:#}")))?;
    let ssh = find_ssh().ok_or_else(|| {
        hinted(
            "ssh was not found in PATH; nothing was issued",
            "install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)",
        )
    })?;

    let work = tempfile::Builder::new()
        .prefix("sshbreak-drill-")
        .tempdir()
        .context("cannot create a temporary directory for the drill certificate")?;
    ui::status(format!(
        "Drilling {} host{} as {} with one {DRILL_VALIDITY} certificate that can only run `true`",
        dests.len(),
        plural(dests.len()),
        principals.join(",")
    ));
    let issued = issue::issue(ctx, &drill_params(principals, work.path().join("drill")))?;
    let key = issued
        .key
        .clone()
        .ok_or_else(|| anyhow!("internal: no key was generated for the drill"))?;

    let jobs = opts.jobs.clamp(1, dests.len());
    let next = AtomicUsize::new(0);
    // Results by index, and the index of the next one to hand to `on_result`.
    let state: Mutex<(Vec<Option<HostResult>>, usize)> = Mutex::new((vec![None; dests.len()], 0));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dest) = dests.get(i) else { break };
                    let args = ssh_args(opts, &key, &issued.certificate, &dest.text);
                    let result = drill_one(
                        &ssh,
                        &args,
                        &dest.text,
                        issued.valid_before_unix,
                        hard_limit(opts.timeout),
                    );
                    // A poisoned lock means another worker panicked; the scope re-raises that.
                    let Ok(mut st) = state.lock() else { break };
                    st.0[i] = Some(result);
                    while let Some(Some(r)) = st.0.get(st.1) {
                        on_result(r);
                        st.1 += 1;
                    }
                }
            });
        }
    });
    let results: Vec<HostResult> = state
        .into_inner()
        .map_err(|_| anyhow!("internal: a drill worker failed"))?
        .0
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow!("internal: a host was not drilled"))?;
    drop(work);

    let passed: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome == Outcome::Pass)
        .map(|r| r.dest.as_str())
        .collect();
    if !passed.is_empty() {
        record_passes(&ctx.home, &passed, issue::unix_now()?)?;
    }
    Ok(results)
}

/// The certificate request: the accounts of the destinations, 60 seconds, `true` only.
fn drill_params(principals: Vec<String>, output: PathBuf) -> IssueParams {
    IssueParams {
        principals,
        cert: CertArgs {
            validity: DRILL_VALIDITY.into(),
            backdate: policy::format_duration(policy::DEFAULT_BACKDATE_SECS),
            allow_long_validity: false,
            key_id: None,
            reason: Some(DRILL_REASON.into()),
            options: CERT_OPTIONS.iter().map(|s| s.to_string()).collect(),
            key_type: "ed25519".into(),
        },
        pubkey: None,
        output: Some(output),
        force: false,
    }
}

fn check_options(opts: &DrillOptions) -> Result<()> {
    if opts.jobs == 0 {
        return Err(usage("-j must be at least 1"));
    }
    if opts.timeout == 0 {
        return Err(usage(
            "--timeout must be at least 1 second (0 would mean ssh's system default)",
        ));
    }
    for o in &opts.ssh_options {
        check_ssh_option(o).map_err(usage)?;
    }
    if let Some(f) = &opts.ssh_config {
        check_ssh_config(f).map_err(usage)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Shared with `enroll-host`: what may reach ssh's command line, hosts lists, and running ssh
// with a hard time limit. One copy, so that both commands refuse the same things.

/// Check one `-o` value before it reaches ssh's command line: ssh must not be able to read it as
/// another option, and it must hold nothing a terminal would interpret.
pub(crate) fn check_ssh_option(o: &str) -> std::result::Result<(), String> {
    check_ssh_arg("ssh option", o, "write options as `-o Name=value`")
}

/// Check a `-F` value: a file name or `none`.
pub(crate) fn check_ssh_config(f: &str) -> std::result::Result<(), String> {
    check_ssh_arg(
        "ssh config",
        f,
        "write -F FILE (./FILE for a name that begins with `-`) or -F none",
    )
}

/// The rule both share: not empty, not starting with `-`, no control characters.
fn check_ssh_arg(what: &str, value: &str, how: &str) -> std::result::Result<(), String> {
    if value.is_empty() || value.starts_with('-') || value.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` is empty, begins with `-` or holds a control character; {how}",
            shown(value)
        ));
    }
    Ok(())
}

/// Whether a destination must name the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserPart {
    /// The drill and `enroll-host --verify`: the certificate is made for the accounts named.
    Required,
    /// `enroll-host`: ssh's own choice of user (the ssh config's `User`, or the local name).
    Optional,
}

/// A checked destination: the text passed to ssh, and the account it names, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub text: String,
    /// Always `Some` for [`UserPart::Required`].
    pub user: Option<String>,
}

/// Check a destination and take its account: the one validator for `drill` and `enroll-host`.
/// Accepts `[USER@]HOST` (the last `@` separates, as in ssh) and `ssh://[USER@]HOST[:PORT][/]`.
/// Refused: a missing user when `user` is [`UserPart::Required`]; an empty user; a leading `-`
/// anywhere ssh would see it; whitespace, control characters, non-ASCII, and anything outside the
/// characters of account and host names — a destination ends up in `%r`/`%h` of a user's
/// ProxyCommand, so shell syntax must never get through.
pub fn parse_destination(s: &str, user: UserPart) -> Result<Destination> {
    if s.is_empty() {
        bail!("empty destination; write USER@HOST or ssh://USER@HOST:PORT");
    }
    if s.starts_with('-') {
        bail!(
            "destination `{}` begins with `-`, so ssh would read it as an option; write USER@HOST or ssh://USER@HOST:PORT",
            shown(s)
        );
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "destination `{}` contains whitespace or a control character ({}); give one destination per argument or line",
            shown(s),
            c.escape_debug()
        );
    }
    // `crate::policy` has the same case-insensitive prefix helper, but private; policy.rs is
    // not this module's to change, so the few lines live here too until it is made pub(crate).
    let (account, host) = if let Some(rest) = crate::policy::strip_prefix_ci(s, "ssh://") {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (account, authority) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let host = match authority.rsplit_once(':') {
            Some((host, port)) => {
                if port.parse::<u16>().ok().filter(|p| *p != 0).is_none() {
                    bail!(
                        "destination `{}` has port `{}`; a port is a number from 1 to 65535",
                        shown(s),
                        shown(port)
                    );
                }
                host
            }
            None => authority,
        };
        (account, host)
    } else {
        match s.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, s),
        }
    };
    match account {
        Some("") => bail!(
            "empty user in destination `{}`: write USER@{} (or leave out the `@`)",
            shown(s),
            shown(host)
        ),
        None if user == UserPart::Required => bail!(
            "no user in destination `{}`: write USER@{} or ssh://USER@{}[:PORT]; the drill certificate is made for the accounts the destinations name",
            shown(s),
            shown(host),
            shown(host)
        ),
        _ => {}
    }
    if let Some(account) = account {
        if account.starts_with('-') {
            bail!(
                "user `{}` in `{}` begins with `-`",
                shown(account),
                shown(s)
            );
        }
        if let Some(c) = account
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
        {
            bail!(
                "user `{}` in `{}` contains `{}`; account names are letters, digits, `.`, `_`, `-` (and `@`)",
                shown(account),
                shown(s),
                c.escape_debug()
            );
        }
    }
    if host.is_empty() {
        bail!("no host in destination `{}`", shown(s));
    }
    if host.starts_with(['-', '.']) || host.len() > MAX_HOST_LEN {
        bail!(
            "host `{}` in `{}` is not a host name or address",
            shown(host),
            shown(s)
        );
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        bail!(
            "host `{}` in `{}` contains `{}`; host names are letters, digits, `.`, `-`, `_` (and `:` in IPv6 addresses)",
            shown(host),
            shown(s),
            c.escape_debug()
        );
    }
    Ok(Destination {
        text: s.to_string(),
        user: account.map(str::to_string),
    })
}

/// The lines of a hosts file that say something: `#` starts a comment; blank lines are skipped.
/// Each is returned trimmed, with its line number (from 1) for error messages. `enroll-host`
/// splits its lines further into a destination and per-host settings.
pub fn parse_hosts_list(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.split('#').next().unwrap_or("").trim();
            (!line.is_empty()).then(|| (i + 1, line.to_string()))
        })
        .collect()
}

/// Read `--hosts-file` (`-` is stdin) and check every line, naming the line of the first bad one.
fn read_hosts_file(path: &Path) -> Result<Vec<String>> {
    let (bytes, name) = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(1 << 20)
            .read_to_end(&mut buf)
            .context("cannot read the hosts list from stdin")?;
        (buf, "stdin".to_string())
    } else {
        (fsx::read_small(path)?, path.display().to_string())
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        usage(format!(
            "{name} is not UTF-8 text; expected one USER@HOST per line"
        ))
    })?;
    let mut hosts = Vec::new();
    for (line, host) in parse_hosts_list(&text) {
        parse_destination(&host, UserPart::Required)
            .map_err(|e| usage(format!("{name} line {line}: {e:#}")))?;
        hosts.push(host);
    }
    Ok(hosts)
}

/// The ssh command line after the program name. The drill's options come first: ssh keeps the
/// first value of each option, so neither `-o` nor the user's ssh config can override them.
fn ssh_args(opts: &DrillOptions, key: &Path, cert: &Path, dest: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(config) = &opts.ssh_config {
        args.push("-F".into());
        args.push(config.into());
    }
    let mut opt = |o: String| {
        args.push("-o".into());
        args.push(o.into());
    };
    // Fail instead of prompting; a drill runs unattended and in parallel.
    opt("BatchMode=yes".into());
    opt(format!("ConnectTimeout={}", opts.timeout));
    // Only the drill certificate may authenticate: no agent keys, no default identity files.
    opt("IdentitiesOnly=yes".into());
    opt("IdentityAgent=none".into());
    // A shared master connection would log in without authenticating at all.
    opt("ControlMaster=no".into());
    opt("ControlPath=none".into());
    // Forwardings from ~/.ssh/config would collide between parallel runs (and the certificate
    // forbids them anyway); LocalCommand has no business in a test.
    opt("ClearAllForwardings=yes".into());
    opt("PermitLocalCommand=no".into());
    opt("RequestTTY=no".into());
    // Errors only: a user config with LogLevel QUIET would hide the reason; INFO adds noise.
    opt("LogLevel=ERROR".into());
    opt(format!("CertificateFile={}", cert.display()));
    args.push("-i".into());
    args.push(key.as_os_str().to_owned());
    if let Some(port) = opts.port {
        args.push("-p".into());
        args.push(port.to_string().into());
    }
    for o in &opts.ssh_options {
        args.push("-o".into());
        args.push(o.into());
    }
    args.push("--".into());
    args.push(dest.into());
    args.push(REMOTE_COMMAND.into());
    args
}

/// Stop ssh after this long: two connect timeouts (jump host and target) plus slack.
fn hard_limit(timeout: u64) -> Duration {
    Duration::from_secs(
        timeout
            .saturating_mul(2)
            .saturating_add(HARD_LIMIT_SLACK_SECS),
    )
}

/// Run ssh against one destination and classify the result.
fn drill_one(
    ssh: &Path,
    args: &[OsString],
    dest: &str,
    valid_before: u64,
    limit: Duration,
) -> HostResult {
    let result = |outcome, seconds, detail: String| HostResult {
        dest: dest.to_string(),
        outcome,
        seconds,
        detail,
    };
    let expired = || issue::unix_now().map_or(true, |now| now >= valid_before);
    if expired() {
        return result(
            Outcome::Failed,
            0.0,
            "not tried: the 60-second drill certificate expired before this host's turn; drill fewer hosts per run or raise -j".into(),
        );
    }
    let mut cmd = Command::new(ssh);
    cmd.args(args);
    let run = match run_bounded(&mut cmd, None, limit) {
        Ok(run) => run,
        Err(msg) => return result(Outcome::Failed, 0.0, msg),
    };
    if run.timed_out {
        return result(
            Outcome::Failed,
            run.seconds,
            format!("no result after {}s; ssh was stopped", limit.as_secs()),
        );
    }
    let (outcome, detail) = classify(run.code, &run.stderr);
    // A refusal after the certificate ran out says nothing about the host.
    if outcome == Outcome::Refused && expired() {
        return result(
            Outcome::Failed,
            run.seconds,
            format!(
                "refused, but the drill certificate expired during the attempt; drill this host again ({detail})"
            ),
        );
    }
    result(outcome, run.seconds, detail)
}

/// How a program run by [`run_bounded`] ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit code; `None` when a signal ended it (also the SIGKILL at the time limit).
    pub code: Option<i32>,
    /// Stopped because it reached the time limit.
    pub timed_out: bool,
    /// Its stdout, at most [`STDOUT_LIMIT`] bytes, lossily decoded.
    pub stdout: String,
    /// Its stderr, at most [`STDERR_LIMIT`] bytes, lossily decoded.
    pub stderr: String,
    /// Wall-clock time from start to end.
    pub seconds: f64,
}

/// Run `cmd` with `input` on stdin (nothing: /dev/null) and at most `limit` of wall-clock time,
/// then SIGKILL its whole process group. `Err` (one line) when it cannot be started or waited for.
///
/// The child gets its own process group, so a stopped ssh goes together with its ProxyCommand or
/// jump-host ssh, and a prompt from one of those (outside BatchMode's reach) cannot take over the
/// terminal in the middle of a parallel run. Input and output go through anonymous temporary
/// files, not pipes: nothing here can block on a full pipe, and a leftover grandchild that still
/// holds the output open (a ControlPersist master, a killed ssh's orphan) cannot make us wait for
/// an end of file.
pub(crate) fn run_bounded(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> std::result::Result<Finished, String> {
    let program = Path::new(cmd.get_program()).display().to_string();
    let temp = |what: &str| {
        tempfile::tempfile()
            .map_err(|e| format!("cannot make a temporary file for {program}'s {what}: {e}"))
    };
    let stdout = temp("output")?;
    let stderr = temp("errors")?;
    let stdin = match input {
        None => Stdio::null(),
        Some(bytes) => {
            let mut f = temp("input")?;
            f.write_all(bytes)
                .and_then(|()| f.seek(SeekFrom::Start(0)))
                .map_err(|e| format!("cannot write {program}'s input to a temporary file: {e}"))?;
            Stdio::from(f)
        }
    };
    let handles = stdout
        .try_clone()
        .and_then(|o| Ok((o, stderr.try_clone()?)))
        .map_err(|e| format!("cannot pass output files to {program}: {e}"))?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(stdin)
        .stdout(handles.0)
        .stderr(handles.1)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.code(), false),
            Ok(None) if start.elapsed() >= limit => {
                stop(&mut child);
                break (None, true);
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                stop(&mut child);
                return Err(format!("cannot wait for {program}: {e}"));
            }
        }
    };
    Ok(Finished {
        code,
        timed_out,
        stdout: read_back(stdout, STDOUT_LIMIT),
        stderr: read_back(stderr, STDERR_LIMIT),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Kill a child started by [`run_bounded`] with everything in its process group, and reap it.
fn stop(child: &mut std::process::Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// The first `limit` bytes a child wrote into a temporary file.
fn read_back(mut f: File, limit: u64) -> String {
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(0)).is_ok() {
        let _ = f.take(limit).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// SIGKILL the process group `pgid` leads (our ssh and what it started). Through kill(1) because
/// the standard library only kills single children; if that fails, `Child::kill` still stops ssh.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Markers of a host-key problem. Checked whatever the exit status: with
/// StrictHostKeyChecking=no ssh logs in despite a changed key, and a pass through a possible
/// man in the middle proves nothing.
const HOST_KEY_MARKERS: &[&str] = &[
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Host key verification failed",
    "has changed and you have requested strict checking",
    "host key is known for",
];
/// sshd answered and said no.
const REFUSED_MARKERS: &[&str] = &["Permission denied (", "Too many authentication failures"];
/// No SSH conversation took place.
const UNREACHABLE_MARKERS: &[&str] = &[
    "Connection refused",
    "Connection timed out",
    "Operation timed out",
    "timed out during banner exchange",
    "No route to host",
    "Network is unreachable",
    "Network is down",
    "Host is down",
    "Could not resolve hostname",
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
    "kex_exchange_identification:",
    "Connection reset by",
];

/// Classify an ssh run from its exit status (None: killed by a signal) and stderr. Returns the
/// outcome and the line that decided it (empty for a pass).
pub fn classify(code: Option<i32>, stderr: &str) -> (Outcome, String) {
    let lines: Vec<String> = stderr
        .lines()
        .map(clean_line)
        .filter(|l| !l.is_empty() && !is_noise(l))
        .collect();
    let find = |markers: &[&str]| {
        lines
            .iter()
            .find(|l| markers.iter().any(|m| l.contains(m)))
            .cloned()
    };
    if find(HOST_KEY_MARKERS).is_some() {
        let detail = if lines
            .iter()
            .any(|l| l.contains("IDENTIFICATION HAS CHANGED"))
        {
            "the host key differs from known_hosts (REMOTE HOST IDENTIFICATION HAS CHANGED)".into()
        } else {
            find(&["host key is known for", "Host key verification failed"]).unwrap_or_default()
        };
        return (Outcome::HostKey, detail);
    }
    let first = lines.first().cloned();
    match code {
        Some(0) => (Outcome::Pass, String::new()),
        Some(255) => {
            if let Some(l) = find(REFUSED_MARKERS) {
                (Outcome::Refused, l)
            } else if let Some(l) = find(UNREACHABLE_MARKERS) {
                (Outcome::Unreachable, l)
            } else if lines.iter().any(|l| l.starts_with("usage: ssh")) {
                (
                    Outcome::Failed,
                    "ssh did not accept its command line; check the destination and -o options"
                        .into(),
                )
            } else {
                (
                    Outcome::Failed,
                    first.unwrap_or_else(|| "ssh failed (status 255) without a message".into()),
                )
            }
        }
        // The host ran the requested `false`, not the certificate's forced `true`.
        Some(1) if lines.is_empty() => (
            Outcome::Failed,
            "logged in, but not with the drill certificate (the host ran the requested command instead of the forced one): another of your keys is accepted there, so the CA was not tested".into(),
        ),
        Some(n) => (
            Outcome::Failed,
            first.unwrap_or_else(|| format!("the session ended with status {n}")),
        ),
        None => (Outcome::Failed, "ssh was killed by a signal".into()),
    }
}

/// Lines ssh prints that say nothing about the outcome.
fn is_noise(line: &str) -> bool {
    line.starts_with("Warning: Permanently added")
        || line.starts_with("** ")
        || line.chars().all(|c| c == '@')
}

/// One line of ssh's stderr made safe and short for a terminal: control characters (a hostile
/// server or ProxyCommand could send escape sequences) become `?`.
fn clean_line(line: &str) -> String {
    let cleaned: String = line
        .trim()
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| c == '@' || c.is_whitespace());
    let cleaned = cleaned.strip_prefix("ssh: ").unwrap_or(cleaned);
    if cleaned.chars().count() > DETAIL_MAX_CHARS {
        let cut: String = cleaned.chars().take(DETAIL_MAX_CHARS).collect();
        format!("{cut}…")
    } else {
        cleaned.to_string()
    }
}

fn result_line(r: &HostResult, width: usize) -> String {
    let mut line = format!(
        "{:<16}  {:<width$}  {:>6.2}s",
        r.outcome.label(),
        r.dest,
        r.seconds
    );
    if !r.detail.is_empty() {
        line += "  ";
        line += &r.detail;
    }
    line
}

/// One next step per kind of failure, for stderr after the table.
fn hints(results: &[HostResult]) -> Vec<String> {
    let has = |o| results.iter().any(|r| r.outcome == o);
    let mut hints = Vec::new();
    if has(Outcome::Refused) {
        hints.push(
            "refused: the host does not trust the CA bundle or does not admit that account with a certificate — `sshbreak enroll-host` it; its sshd log says why (a clock more than a minute ahead also refuses a 60-second certificate)".to_string(),
        );
    }
    if has(Outcome::Unreachable) {
        hints.push(
            "unreachable: check the name, port and network path (in an emergency this path must work too)".to_string(),
        );
    }
    if has(Outcome::HostKey) {
        hints.push(
            "host-key problem: the host's key is unknown or has changed; verify it out of band and fix known_hosts (ssh-keygen -R HOST) before trusting the host".to_string(),
        );
    }
    hints
}

/// The first executable `ssh` in PATH. Looked up before the touch, so a missing client does not
/// waste a signature.
fn find_ssh() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("ssh"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn drills_path(home: &Path) -> PathBuf {
    home.join(DRILLS_FILE)
}

/// Last good drill per destination. A missing file is an empty record.
pub fn load_drills(home: &Path) -> Result<BTreeMap<String, u64>> {
    let path = drills_path(home);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let bytes = fsx::read_small(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a drill record ({e}); fix it, or delete it and drill the hosts again",
            path.display()
        )
    })
}

/// Set the last good drill of `passed` to `now`, under the file's lock so that concurrent drills
/// (cron and a person) do not lose each other's entries.
fn record_passes(home: &Path, passed: &[&str], now: u64) -> Result<()> {
    crate::fsx::ensure_private_dir(home)?;
    let path = drills_path(home);
    let _lock = fsx::lock(&path)?;
    let mut records = load_drills(home)?;
    for dest in passed {
        records.insert((*dest).to_string(), now);
    }
    let text = serde_json::to_string_pretty(&records)? + "\n";
    fsx::write_atomic(&path, text.as_bytes(), fsx::PRIVATE)
        .context("the drill passed, but it could not be recorded")
}

/// `--status`: exit 1 when any host is stale or nothing is recorded, so cron and monitoring can
/// alert on the exit status; the listing goes to stdout either way.
fn run_status(args: &DrillArgs, ctx: &Ctx) -> Result<ExitCode> {
    let records = load_drills(&ctx.home)?;
    if records.is_empty() {
        out(format!(
            "no drill recorded in {}; run `sshbreak drill USER@HOST…`\n",
            drills_path(&ctx.home).display()
        ))?;
        return Ok(ExitCode::FAILURE);
    }
    let max_age_days = args.max_age_days.unwrap_or(DEFAULT_MAX_AGE_DAYS);
    let (text, stale) = status_report(&records, issue::unix_now()?, max_age_days);
    out(text)?;
    Ok(if stale == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `--status` listing (one line per destination, then a summary) and the number of stale
/// entries: those whose last good drill is more than `max_age_days` days before `now`.
pub fn status_report(
    records: &BTreeMap<String, u64>,
    now: u64,
    max_age_days: u64,
) -> (String, usize) {
    let max_age = max_age_days.saturating_mul(DAY_SECS);
    let width = records.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    let mut stale = 0;
    for (dest, &when) in records {
        let age = now.saturating_sub(when);
        let flag = if age > max_age {
            stale += 1;
            "STALE"
        } else {
            "ok"
        };
        text += &format!(
            "{flag:<5}  {dest:<width$}  last good drill {} ago ({})\n",
            ui::human_duration(age),
            crate::timefmt::iso(when)
        );
    }
    let total = records.len();
    text += &if stale == 0 {
        format!(
            "all {total} host{} drilled within the last {max_age_days} days\n",
            plural(total)
        )
    } else {
        format!(
            "{stale} host{} need{} a drill (none in the last {max_age_days} days)\n",
            plural(stale),
            if stale == 1 { "s" } else { "" }
        )
    };
    (text, stale)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// User input in a message: escaped and cut short.
fn shown(s: &str) -> String {
    let escaped: String = s.escape_debug().collect();
    if escaped.chars().count() > 80 {
        escaped.chars().take(80).collect::<String>() + "…"
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_796_400_000;
    const DAY: u64 = 86_400;

    // Real stderr of OpenSSH_9.2p1 (Debian 12), collected with the drill's options against
    // sshd on 127.0.0.1 and small stand-in servers.
    const PASS_ADDED: &str =
        "Warning: Permanently added '[127.0.0.1]:22301' (ED25519) to the list of known hosts.\n";
    const REFUSED: &str = "Warning: Permanently added '[127.0.0.1]:22302' (ED25519) to the list of known hosts.\n\
        root@127.0.0.1: Permission denied (publickey).\n";
    const CLOSED_PORT: &str = "ssh: connect to host 127.0.0.1 port 22399: Connection refused\n";
    const NO_NAME: &str =
        "ssh: Could not resolve hostname nosuchhost.invalid: Name or service not known\n";
    const UNKNOWN_HOST_KEY: &str = "No ED25519 host key is known for [127.0.0.1]:22301 and you have requested strict checking.\n\
        Host key verification failed.\n";
    const BANNER_TIMEOUT: &str = "Connection timed out during banner exchange\n\
        Connection to 127.0.0.1 port 22310 timed out\n";
    const CLOSED_BEFORE_BANNER: &str = "kex_exchange_identification: Connection closed by remote host\n\
        Connection closed by 127.0.0.1 port 22311\n";
    const RESET_BEFORE_BANNER: &str = "kex_exchange_identification: read: Connection reset by peer\n\
        Connection reset by 127.0.0.1 port 22312\n";
    const BAD_OPTION: &str = "command-line: line 0: Bad configuration option: bogus\n";
    const USAGE: &str = "usage: ssh [-46AaCfGgKkMNnqsTtVvXxYy] [-B bind_interface]\n\
        [-b bind_address] [-c cipher_spec] [-D [bind_address:]port]\n";
    const NOLOGIN: &str = "This account is currently not available.\n";
    // The same `ssh: connect to host %s port %s: %s` line with other strerror texts.
    const NO_ROUTE: &str = "ssh: connect to host 10.0.0.1 port 22: No route to host\n";
    const CONNECT_TIMEOUT: &str = "ssh: connect to host 10.0.0.1 port 22: Connection timed out\n";

    fn changed_host_key() -> String {
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
         It is also possible that a host key has just been changed.\n\
         The fingerprint for the ED25519 key sent by the remote host is\n\
         SHA256:cLTEugDRxrkSU6Tk2/aShTOY9/qK1NxYsvUr3y+ydgY.\n\
         Please contact your system administrator.\n\
         Add correct host key in kh_changed to get rid of this message.\n\
         Offending ED25519 key in kh_changed:1\n\
         \x20 remove with:\n\
         \x20 ssh-keygen -f \"kh_changed\" -R \"[127.0.0.1]:22301\"\n"
            .to_string()
    }

    fn outcome(code: i32, stderr: &str) -> Outcome {
        classify(Some(code), stderr).0
    }

    #[test]
    fn real_ssh_messages_are_classified() {
        assert_eq!(classify(Some(0), ""), (Outcome::Pass, String::new()));
        assert_eq!(outcome(0, PASS_ADDED), Outcome::Pass);
        assert_eq!(
            classify(Some(255), REFUSED),
            (
                Outcome::Refused,
                "root@127.0.0.1: Permission denied (publickey).".to_string()
            )
        );
        assert_eq!(
            classify(Some(255), CLOSED_PORT),
            (
                Outcome::Unreachable,
                "connect to host 127.0.0.1 port 22399: Connection refused".to_string()
            )
        );
        for s in [
            NO_NAME,
            BANNER_TIMEOUT,
            CLOSED_BEFORE_BANNER,
            RESET_BEFORE_BANNER,
            NO_ROUTE,
            CONNECT_TIMEOUT,
        ] {
            assert_eq!(outcome(255, s), Outcome::Unreachable, "{s}");
        }
        assert_eq!(outcome(255, UNKNOWN_HOST_KEY), Outcome::HostKey);
        let strict = changed_host_key()
            + "Host key for [127.0.0.1]:22301 has changed and you have requested strict checking.\n\
               Host key verification failed.\n";
        let (o, detail) = classify(Some(255), &strict);
        assert_eq!(o, Outcome::HostKey);
        assert!(detail.contains("differs from known_hosts"), "{detail}");
    }

    #[test]
    fn a_login_through_a_changed_host_key_is_not_a_pass() {
        // StrictHostKeyChecking=no: ssh warns, disables passwords, and logs in with the key.
        let lenient = changed_host_key()
            + "Password authentication is disabled to avoid man-in-the-middle attacks.\n\
               Keyboard-interactive authentication is disabled to avoid man-in-the-middle attacks.\n";
        assert_eq!(outcome(0, &lenient), Outcome::HostKey);
    }

    #[test]
    fn other_failures_carry_the_first_meaningful_line() {
        assert_eq!(
            classify(Some(255), BAD_OPTION),
            (
                Outcome::Failed,
                "command-line: line 0: Bad configuration option: bogus".to_string()
            )
        );
        let (o, detail) = classify(Some(255), USAGE);
        assert_eq!(o, Outcome::Failed);
        assert!(detail.contains("command line"), "{detail}");
        assert_eq!(
            classify(Some(1), NOLOGIN),
            (
                Outcome::Failed,
                "This account is currently not available.".to_string()
            )
        );
        assert_eq!(outcome(255, ""), Outcome::Failed);
        assert_eq!(classify(None, "").0, Outcome::Failed);
        let (o, detail) = classify(Some(3), "");
        assert_eq!(o, Outcome::Failed);
        assert!(detail.contains("status 3"), "{detail}");
    }

    #[test]
    fn a_login_with_another_key_is_caught_by_the_forced_command() {
        // Observed: an authorized plain key from the user's ssh config logs in, the host runs
        // the requested `false`, ssh exits 1 with nothing on stderr.
        let (o, detail) = classify(Some(1), PASS_ADDED);
        assert_eq!(o, Outcome::Failed);
        assert!(
            detail.contains("not with the drill certificate"),
            "{detail}"
        );
    }

    #[test]
    fn escape_sequences_in_ssh_output_are_neutralised() {
        let (_, detail) = classify(Some(255), "evil\x1b[2Jline\n");
        assert_eq!(detail, "evil?[2Jline");
        let long = "x".repeat(1000);
        let (_, detail) = classify(Some(255), &long);
        assert_eq!(detail.chars().count(), DETAIL_MAX_CHARS + 1);
    }

    fn user_of(s: &str, rule: UserPart) -> Option<String> {
        parse_destination(s, rule).unwrap().user
    }

    #[test]
    fn destinations_must_name_the_account() {
        let req = UserPart::Required;
        assert_eq!(user_of("root@web1", req).as_deref(), Some("root"));
        assert_eq!(
            user_of("ssh://ubuntu@10.0.0.5:2222", req).as_deref(),
            Some("ubuntu")
        );
        assert_eq!(
            user_of("SSH://ubuntu@web1/", req).as_deref(),
            Some("ubuntu")
        );
        // ssh splits at the last `@`.
        assert_eq!(
            user_of("carl@corp.example@web1", req).as_deref(),
            Some("carl@corp.example")
        );
        assert_eq!(user_of("root@::1", req).as_deref(), Some("root"));
        for bad in ["web1", "@web1", "ssh://web1:22", "ssh://@web1", ""] {
            let err = parse_destination(bad, req).unwrap_err().to_string();
            assert!(
                err.contains("no user") || err.contains("empty"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn enroll_host_destinations_may_leave_the_user_to_ssh() {
        let opt = UserPart::Optional;
        assert_eq!(user_of("web1", opt), None);
        assert_eq!(user_of("ssh://web1:2222", opt), None);
        assert_eq!(user_of("root@web1", opt).as_deref(), Some("root"));
        // An `@` with nothing before it is a mistake either way.
        for bad in ["@web1", "ssh://@web1"] {
            let err = parse_destination(bad, opt).unwrap_err().to_string();
            assert!(err.contains("empty user"), "{bad}: {err}");
        }
        // The same refusals as the drill's, user or not.
        for bad in [
            "-oProxyCommand=id",
            "web1;id",
            "$(id)",
            "web1 -p 2",
            "ssh://web1:0",
        ] {
            assert!(parse_destination(bad, opt).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ssh_options_and_configs_that_ssh_could_misread_are_refused() {
        assert!(check_ssh_option("ConnectTimeout=5").is_ok());
        for bad in ["", "-F/tmp/x", "A=b\nProxyCommand=id"] {
            let err = check_ssh_option(bad).unwrap_err();
            assert!(err.contains("-o Name=value"), "{err}");
        }
        assert!(check_ssh_config("none").is_ok());
        assert!(check_ssh_config("/etc/ssh/ssh_config").is_ok());
        for bad in ["", "-oProxyCommand=id", "a\tb"] {
            assert!(check_ssh_config(bad).unwrap_err().contains("-F none"));
        }
    }

    #[test]
    fn a_run_past_its_limit_is_stopped_with_its_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // The shell leaves a grandchild behind, as a ProxyCommand would.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", pid_file.display()));
        let start = Instant::now();
        let run = run_bounded(&mut cmd, None, Duration::from_millis(500)).unwrap();
        assert!(run.timed_out && run.code.is_none(), "{run:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // Gone, or a zombie waiting for a parent that reaps (PID 1 in a container may not).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            if state.is_empty() || state.starts_with('Z') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the grandchild {pid} still runs: {state}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_bounded_run_gets_its_input_and_keeps_its_output_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let run = run_bounded(&mut cmd, Some(b"hello\n"), Duration::from_secs(30)).unwrap();
        assert_eq!(run.code, Some(3));
        assert!(!run.timed_out);
        assert_eq!(run.stdout, "hello\n");
        assert_eq!(run.stderr, "oops\n");
        let err = run_bounded(
            &mut Command::new("/nonexistent/sshbreak-test"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            err.starts_with("cannot run /nonexistent/sshbreak-test"),
            "{err}"
        );
    }

    #[test]
    fn nothing_option_or_shell_like_gets_through() {
        for bad in [
            "-oProxyCommand=touch /tmp/x",
            "-oProxyCommand=id",
            "-p22",
            "ssh://-oProxyCommand=id@web1",
            "-x@web1",
            "root@-oProxyCommand=id",
            "root@web1;id",
            "root@$(id)",
            "root@`id`",
            "ro'ot@web1",
            "root@web1 -p 2",
            "root@web1\n",
            "root@wéb1",
            "root@.web1",
            "ssh://root@web1:0",
            "ssh://root@web1:99999",
            "ssh://root@web1:22/path",
            "ssh://ro%6Ft@web1",
            "root@",
        ] {
            assert!(
                parse_destination(bad, UserPart::Required).is_err(),
                "{bad:?} was accepted"
            );
        }
        let err = parse_destination("-oProxyCommand=id", UserPart::Required)
            .unwrap_err()
            .to_string();
        assert!(err.contains("begins with `-`"), "{err}");
    }

    #[test]
    fn hosts_files_allow_comments_and_blank_lines() {
        let text = "# fleet\nroot@web1\n\n  ubuntu@web2  # the new one\n#root@old\n";
        assert_eq!(
            parse_hosts_list(text),
            vec![(2, "root@web1".to_string()), (4, "ubuntu@web2".to_string())]
        );
    }

    #[test]
    fn the_drills_options_come_first_and_the_destination_last() {
        let opts = DrillOptions {
            port: Some(2222),
            ssh_options: vec!["BatchMode=no".into(), "ProxyJump=bastion".into()],
            jobs: 2,
            timeout: 7,
            ssh_config: Some("none".into()),
        };
        let args: Vec<String> = ssh_args(
            &opts,
            Path::new("/t/k"),
            Path::new("/t/k-cert.pub"),
            "root@web1",
        )
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
        let pos = |s: &str| args.iter().position(|a| a == s).unwrap_or(usize::MAX);
        assert!(pos("BatchMode=yes") < pos("BatchMode=no"), "{args:?}");
        for must in [
            "ConnectTimeout=7",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "ControlPath=none",
            "CertificateFile=/t/k-cert.pub",
            "/t/k",
            "2222",
            "ProxyJump=bastion",
        ] {
            assert!(pos(must) < pos("--"), "{must} in {args:?}");
        }
        assert_eq!(args[args.len() - 3..], ["--", "root@web1", REMOTE_COMMAND]);
        // -F first: it only names the file; the options above still win over what it says.
        assert_eq!(args[..2], ["-F", "none"]);
    }

    #[test]
    fn bad_runs_are_refused_before_anything_happens() {
        let ok = DrillOptions::default();
        assert!(check_options(&ok).is_ok());
        for bad in [
            DrillOptions {
                jobs: 0,
                ..ok.clone()
            },
            DrillOptions {
                timeout: 0,
                ..ok.clone()
            },
            DrillOptions {
                ssh_options: vec!["-oProxyCommand=id".into()],
                ..ok.clone()
            },
            DrillOptions {
                ssh_options: vec![String::new()],
                ..ok.clone()
            },
            DrillOptions {
                ssh_config: Some(String::new()),
                ..ok.clone()
            },
        ] {
            assert!(check_options(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_drill_certificate_is_sixty_seconds_and_true_only() {
        let p = drill_params(vec!["root".into()], PathBuf::from("/t/drill"));
        let backdate = policy::parse_duration(&p.cert.backdate).unwrap();
        assert_eq!(backdate, policy::DEFAULT_BACKDATE_SECS);
        let v = policy::parse_validity(&p.cert.validity, NOW, backdate).unwrap();
        assert_eq!(v.before, NOW + 60);
        assert!(p.cert.options.contains(&"force-command=true".to_string()));
        assert!(p.cert.options.contains(&"clear".to_string()));
        let parsed: Vec<_> = p
            .cert
            .options
            .iter()
            .map(|o| policy::parse_option(o).unwrap())
            .collect();
        policy::check_options(&parsed).unwrap();
        assert_eq!(p.output.as_deref(), Some(Path::new("/t/drill")));
    }

    #[test]
    fn status_flags_old_drills_as_stale() {
        let mut records = BTreeMap::new();
        records.insert("root@old".to_string(), NOW - 45 * DAY);
        records.insert("root@new".to_string(), NOW - 2 * DAY - 3600);
        let (text, stale) = status_report(&records, NOW, 30);
        assert_eq!(stale, 1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("ok ") && lines[0].contains("root@new"),
            "{text}"
        );
        assert!(lines[0].contains("2d1h ago"), "{text}");
        assert!(
            lines[1].starts_with("STALE") && lines[1].contains("root@old"),
            "{text}"
        );
        assert!(lines[1].contains("45d ago"), "{text}");
        assert_eq!(lines[2], "1 host needs a drill (none in the last 30 days)");
        let (text, stale) = status_report(&records, NOW, 60);
        assert_eq!(stale, 0);
        assert!(!text.contains("STALE"), "{text}");
        assert!(text.ends_with("all 2 hosts drilled within the last 60 days\n"));
        // A record from the future (clock changes) is not stale and does not underflow.
        records.insert("root@skew".to_string(), NOW + 100);
        assert_eq!(status_report(&records, NOW, 0).1, 2);
    }

    #[test]
    fn result_lines_have_outcome_destination_and_time() {
        let r = HostResult {
            dest: "root@web1".into(),
            outcome: Outcome::Pass,
            seconds: 0.213,
            detail: String::new(),
        };
        assert_eq!(
            result_line(&r, 12),
            "pass              root@web1       0.21s"
        );
        let f = HostResult {
            outcome: Outcome::Failed,
            detail: "Bad configuration option: bogus".into(),
            ..r
        };
        assert_eq!(f.describe(), "failed: Bad configuration option: bogus");
        assert!(result_line(&f, 9).ends_with("0.21s  Bad configuration option: bogus"));
        assert_eq!(Outcome::HostKey.to_string(), "host-key problem");
    }

    #[test]
    fn passes_are_recorded_privately_and_merged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        record_passes(&home, &["root@a"], NOW).unwrap();
        record_passes(&home, &["root@b"], NOW + 5).unwrap();
        let records = load_drills(&home).unwrap();
        assert_eq!(records.get("root@a"), Some(&NOW));
        assert_eq!(records.get("root@b"), Some(&(NOW + 5)));
        let mode = std::fs::metadata(drills_path(&home))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(drills_path(&home), "not json").unwrap();
        let err = load_drills(&home).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
