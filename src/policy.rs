//! Certificate policy: what a user certificate may say, and how a request becomes one.
//!
//! This module turns the user's words (`--validity 10m`, `-n ubuntu,carl`, `-O no-pty`, a reason)
//! into a checked [`CertRequest`] and then into an [`ssh_key::certificate::Builder`] ready for the
//! token to sign. It is pure: the current time, the backdate, the nonce, the serial, the local user
//! and host name are all passed in; nothing here reads the clock, the environment, the filesystem or
//! a random source. That keeps every rule testable with fixed times.
//!
//! The syntax follows `ssh-keygen -V`, `-n` and `-O` so that people who know OpenSSH are not
//! surprised, with three deliberate differences, each documented where it applies:
//! - absolute times (`YYYYMMDD[HHMM[SS]]`) are read as UTC, not local time, because a pure module
//!   has no time zone and a break-glass certificate is often issued on a machine in another zone;
//! - `clear` removes extensions only, never critical options, so it can only make a certificate
//!   narrower (in ssh-keygen it also drops `verify-required`);
//! - a few inputs ssh-keygen accepts are refused because sshd would not do what they look like they
//!   do (wildcard-looking principals, a source-address with host bits set, an empty principal list).
//!
//! sshd enforces none of the "do not ask for too much" rules itself (see DESIGN.md §1): a certificate
//! without principals is valid for every account and one ending `forever` never expires. So the
//! checks live here, and a dangerous choice needs an explicit flag (`allow_long`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::public::KeyData;

/// Validity used when the user gives none: long enough to log in and fix things, short enough that a
/// leaked certificate is worthless by the time anyone finds it.
pub const DEFAULT_VALIDITY: &str = "10m";
/// How far before `now` a relative validity starts, so that a host whose clock is a little behind
/// still accepts a fresh certificate. ssh-keygen backdates by one to two minutes; five minutes covers
/// the badly synchronised hosts one meets in an emergency.
pub const DEFAULT_BACKDATE_SECS: u64 = 300;
/// Longest validity accepted without `allow_long` (see [`check_validity`] for how it is measured).
pub const MAX_VALIDITY_SECS: u64 = 24 * 3600;
/// The `valid_before` value OpenSSH reads as "never expires".
pub const FOREVER: u64 = crate::timefmt::FOREVER;
/// Most principals one certificate may name (OpenSSH's `SSHKEY_CERT_MAX_PRINCIPALS`).
pub const MAX_PRINCIPALS: usize = 256;
/// Longest principal, in bytes. Account names are far shorter; this only stops absurd input.
pub const MAX_PRINCIPAL_LEN: usize = 256;
/// Longest key id, in bytes. sshd logs the key id on every login, so it must stay readable.
pub const MAX_KEY_ID_LEN: usize = 1024;

/// Longest reason kept in a default key id, in characters.
const MAX_REASON_CHARS: usize = 200;
/// Latest end time other than [`FOREVER`]: ssh-key (like OpenSSH's `time_t`) cannot represent later
/// times, and a certificate it cannot represent would fail at signing time instead of here.
const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// sshd refuses a source-address entry longer than `INET6_ADDRSTRLEN + 3` characters.
const MAX_CIDR_ENTRY_LEN: usize = 46 + 3;

/// A validity window in Unix seconds; `before == u64::MAX` means forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First second at which the certificate is valid (`valid_after`).
    pub after: u64,
    /// First second at which the certificate is no longer valid (`valid_before`).
    pub before: u64,
}

/// Parse a duration in ssh-keygen's time format (sshd_config(5) "TIME FORMATS").
///
/// A duration is one or more `NUMBER[UNIT]` groups with units `s`, `m`, `h`, `d`, `w` (any case);
/// a number without a unit is seconds, and groups add up: `90`, `90s`, `10m`, `1h30m`, `2d`, `1w`.
/// Zero is accepted (callers decide whether it makes sense); empty input, signs, spaces, unknown
/// units and anything that overflows 64 bits are errors.
pub fn parse_duration(s: &str) -> Result<u64> {
    if s.is_empty() {
        bail!("empty duration; write a number with a unit s, m, h, d or w, e.g. `10m` or `1h30m`");
    }
    let overflow = || anyhow!("duration `{}` is too large", show(s));
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in s.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or_else(overflow)?;
            number = Some(n);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => bail!(
                "invalid duration `{}`: `{}` is not a unit; use s, m, h, d or w, e.g. `10m` or `1h30m`",
                show(s),
                c.escape_debug()
            ),
        };
        let Some(n) = number.take() else {
            bail!(
                "invalid duration `{}`: unit `{c}` has no number before it; write e.g. `10m` or `1h30m`",
                show(s)
            );
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(overflow)?;
    }
    if let Some(n) = number {
        // A trailing bare number counts as seconds, as in ssh-keygen (`1m30` is 90 seconds).
        total = total.checked_add(n).ok_or_else(overflow)?;
    }
    Ok(total)
}

/// Parse a validity specification into a window, given the current time.
///
/// Accepted forms (`D` is a [`parse_duration`] duration):
/// - `D` (sshbreak's short form) and `+D` (ssh-keygen's): from `now - backdate` to `now + D`.
///   ssh-keygen also backdates `+D` (to the start of the previous minute); sshbreak uses the same
///   `backdate` for both forms because the backdate exists for hosts with slow clocks, whichever
///   way the duration was written.
/// - `forever`: from `now - backdate`, never expiring (refused later by [`check_validity`] unless
///   long validity is allowed).
/// - `START:END`, as `ssh-keygen -V`, with no extra backdate because the start is explicit:
///   - START: `-D` or `+D` (relative to now), `always` (the epoch), an absolute time, or `0xHEX`;
///   - END: `+D` or `-D` (relative to now), `forever`, an absolute time, or `0xHEX`;
///   - absolute times are `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optionally followed by
///     `Z`. sshbreak reads them as **UTC** with or without the `Z` (ssh-keygen reads them as local
///     time without it), because this module has no time zone and a UTC reading is the same on
///     every machine.
///
/// Keywords are case-insensitive. The window must be non-empty (`after < before`) and must end
/// after `now`; a lone start (`-5m`, `always`) or a lone absolute time is refused with a hint
/// rather than guessed at.
pub fn parse_validity(spec: &str, now: u64, backdate: u64) -> Result<Validity> {
    if spec.is_empty() {
        bail!(
            "empty validity; write a duration such as `{DEFAULT_VALIDITY}` or a window such as `-5m:+1h`"
        );
    }
    let v = match spec.split_once(':') {
        Some((from, to)) => {
            if from.is_empty() || to.is_empty() || to.contains(':') {
                bail!(
                    "invalid validity `{}`: a window is `START:END` with exactly one colon, e.g. `-5m:+1h` or `always:forever`",
                    show(spec)
                );
            }
            Validity {
                after: parse_start(from, now)?,
                before: parse_end(to, now)?,
            }
        }
        None => {
            let after = now.checked_sub(backdate).ok_or_else(|| {
                anyhow!("backdate of {backdate}s reaches before 1970; use a smaller backdate")
            })?;
            let before = if spec.eq_ignore_ascii_case("forever") {
                FOREVER
            } else if spec.starts_with('-') {
                bail!(
                    "validity `{}` has a start but no end; write a window such as `{}:+1h`",
                    show(spec),
                    show(spec)
                );
            } else if spec.eq_ignore_ascii_case("always") {
                bail!("`always` is only a start; write `always:forever` or `always:+1h`");
            } else if looks_absolute(spec) {
                // `20261205` would otherwise read as 20 million seconds (234 days): refuse the
                // ambiguity, as ssh-keygen does by requiring both ends of an absolute window.
                bail!(
                    "validity `{}` looks like a date but has no end; write a window such as `{}:20991231` or a duration with a unit such as `10m`",
                    show(spec),
                    show(spec)
                );
            } else {
                let duration = spec.strip_prefix('+').unwrap_or(spec);
                add_to_now(now, duration, spec)?
            };
            Validity { after, before }
        }
    };
    if v.after >= v.before {
        bail!(
            "validity `{}` is empty: it starts {} and ends {}; the end must come after the start",
            show(spec),
            crate::timefmt::iso(v.after),
            crate::timefmt::iso(v.before)
        );
    }
    if v.before <= now {
        bail!(
            "validity `{}` ends {}, which is not after now ({}); this certificate would already be expired",
            show(spec),
            crate::timefmt::iso(v.before),
            crate::timefmt::iso(now)
        );
    }
    Ok(v)
}

/// Refuse a validity window that is too broad, unless `allow_long` is set.
///
/// Always refused: an empty window, or one that ends at or before `now`.
/// Refused without `allow_long`: an end of `forever`, a start of `always` (the epoch, which
/// defeats clock checks on every host), and a window longer than [`MAX_VALIDITY_SECS`] plus
/// [`DEFAULT_BACKDATE_SECS`].
///
/// The length is measured over the whole window, `before - after`, not from `now`: a window that
/// started long ago is usable on every host whose clock is wrong by that much, so the past part
/// counts. The default backdate is allowed on top of the limit so that the plain `24h` (which runs
/// from `now - 5m`) is accepted, while `-6m:+24h` is not.
pub fn check_validity(v: &Validity, now: u64, allow_long: bool) -> Result<()> {
    if v.after >= v.before {
        bail!(
            "validity window is empty: it starts {} and ends {}; the end must come after the start",
            crate::timefmt::iso(v.after),
            crate::timefmt::iso(v.before)
        );
    }
    if v.before <= now {
        bail!(
            "validity window ends {}, which is not after now ({}); this certificate would already be expired",
            crate::timefmt::iso(v.before),
            crate::timefmt::iso(now)
        );
    }
    if allow_long {
        return Ok(());
    }
    if v.before == FOREVER {
        bail!(
            "this certificate would never expire (`forever`); pass --allow-long-validity if you really mean it"
        );
    }
    if v.after == 0 {
        bail!(
            "this certificate would be valid since 1970 (`always`), so hosts with a wrong clock accept it; pass --allow-long-validity if you really mean it"
        );
    }
    let length = v.before - v.after;
    if length > MAX_VALIDITY_SECS + DEFAULT_BACKDATE_SECS {
        bail!(
            "validity window is {} long ({} to {}), more than the {}h limit (plus {} backdate); pass --allow-long-validity if you really mean it",
            format_duration(length),
            crate::timefmt::iso(v.after),
            crate::timefmt::iso(v.before),
            MAX_VALIDITY_SECS / 3600,
            format_duration(DEFAULT_BACKDATE_SECS)
        );
    }
    // A short window that opens next year is a dormant credential: the cap is on how long from
    // now the certificate stays usable, not only on the window's length.
    let horizon = v.before - now;
    if horizon > MAX_VALIDITY_SECS {
        bail!(
            "this certificate would stay usable until {}, more than {}h from now; pass --allow-long-validity if you really mean it",
            crate::timefmt::iso(v.before),
            MAX_VALIDITY_SECS / 3600
        );
    }
    Ok(())
}

/// Parse a comma-separated principal list, as `ssh-keygen -n`.
///
/// Each principal must be non-empty, at most [`MAX_PRINCIPAL_LEN`] bytes, without whitespace or
/// control characters, and without `*` or `?`: sshd compares principals literally, so
/// `web*` would name an account called `web*`, never a pattern, and refusing it saves someone from
/// believing they issued a wildcard. Duplicates are dropped, keeping the first occurrence's place.
/// An empty list is an error: a certificate without principals is valid for every account.
pub fn parse_principals(list: &str) -> Result<Vec<String>> {
    if list.is_empty() {
        bail!(
            "no principals given; a certificate without principals is valid for every account, so name the accounts, e.g. `-n root` or `-n ubuntu,carl`"
        );
    }
    let mut out: Vec<String> = Vec::new();
    for principal in list.split(',') {
        if principal.is_empty() {
            bail!(
                "empty principal in `{}`; remove the extra comma (e.g. `-n ubuntu,carl`)",
                show(list)
            );
        }
        check_principal(principal)?;
        if !out.iter().any(|p| p == principal) {
            out.push(principal.to_owned());
        }
    }
    if out.len() > MAX_PRINCIPALS {
        bail!(
            "{} principals given, more than the {MAX_PRINCIPALS} a certificate may hold; issue several certificates",
            out.len()
        );
    }
    Ok(out)
}

/// One permission that OpenSSH grants through a `permit-*` extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// `permit-X11-forwarding`
    X11Forwarding,
    /// `permit-agent-forwarding`
    AgentForwarding,
    /// `permit-port-forwarding`
    PortForwarding,
    /// `permit-pty`
    Pty,
    /// `permit-user-rc`
    UserRc,
}

impl Permission {
    /// ssh-keygen's default extensions: every permission.
    pub const ALL: [Permission; 5] = [
        Permission::X11Forwarding,
        Permission::AgentForwarding,
        Permission::PortForwarding,
        Permission::Pty,
        Permission::UserRc,
    ];

    /// The extension name in the certificate (note OpenSSH's capital `X` in `X11`).
    pub fn extension_name(self) -> &'static str {
        match self {
            Permission::X11Forwarding => "permit-X11-forwarding",
            Permission::AgentForwarding => "permit-agent-forwarding",
            Permission::PortForwarding => "permit-port-forwarding",
            Permission::Pty => "permit-pty",
            Permission::UserRc => "permit-user-rc",
        }
    }

    /// The word after `no-` / `permit-` in an `-O` option.
    fn option_word(self) -> &'static str {
        match self {
            Permission::X11Forwarding => "x11-forwarding",
            Permission::AgentForwarding => "agent-forwarding",
            Permission::PortForwarding => "port-forwarding",
            Permission::Pty => "pty",
            Permission::UserRc => "user-rc",
        }
    }
}

/// One `-O` certificate option, as `ssh-keygen -O`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertOption {
    /// `clear`: remove every extension chosen so far (defaults included). Critical options stay.
    Clear,
    /// `no-…`: remove one permission.
    Deny(Permission),
    /// `permit-…`: add one permission.
    Permit(Permission),
    /// `force-command=CMD` (critical option): sshd runs CMD instead of what the client asks.
    ForceCommand(String),
    /// `source-address=CIDR[,CIDR…]` (critical option), validated.
    SourceAddress(String),
    /// `verify-required` (critical option): the user's FIDO key must verify the user (PIN).
    VerifyRequired,
    /// `no-verify-required`: undo `verify-required`.
    NoVerifyRequired,
    /// `no-touch-required` (extension): sshd accepts the user's FIDO key signing without a touch.
    NoTouchRequired,
    /// `touch-required`: undo `no-touch-required`.
    TouchRequired,
    /// `extension:NAME[=VALUE]`: any extension; no value means a flag (empty value).
    Extension {
        /// Extension name, e.g. `login@example.com`.
        name: String,
        /// Extension value; empty for a flag.
        value: String,
    },
    /// `critical:NAME[=VALUE]`: any critical option. sshd refuses a certificate carrying a
    /// critical option it does not know, so this is for other verifiers or for testing.
    Critical {
        /// Critical option name.
        name: String,
        /// Critical option value; empty for a flag.
        value: String,
    },
}

const VALID_OPTIONS: &str = "clear, no-x11-forwarding, no-agent-forwarding, no-port-forwarding, no-pty, no-user-rc, \
permit-x11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, permit-user-rc, \
force-command=CMD, source-address=CIDR[,CIDR...], verify-required, no-verify-required, \
no-touch-required, touch-required, extension:NAME[=VALUE], critical:NAME[=VALUE]";

/// Parse one `-O` value. Option names are case-insensitive (as in ssh-keygen); values are kept as
/// written. `critical:force-command=…`, `critical:source-address=…` and `critical:verify-required`
/// are read as the named options so that they get the same checks.
pub fn parse_option(s: &str) -> Result<CertOption> {
    if s.is_empty() {
        bail!("empty certificate option; valid options: {VALID_OPTIONS}");
    }
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "clear" => return Ok(CertOption::Clear),
        "verify-required" => return Ok(CertOption::VerifyRequired),
        "no-verify-required" => return Ok(CertOption::NoVerifyRequired),
        "no-touch-required" => return Ok(CertOption::NoTouchRequired),
        "touch-required" => return Ok(CertOption::TouchRequired),
        "force-command" | "source-address" => {
            bail!(
                "option `{lower}` needs a value, e.g. `force-command=/usr/bin/true` or `source-address=192.0.2.0/24`"
            );
        }
        _ => {}
    }
    for p in Permission::ALL {
        if lower.strip_prefix("no-") == Some(p.option_word()) {
            return Ok(CertOption::Deny(p));
        }
        if lower.strip_prefix("permit-") == Some(p.option_word()) {
            return Ok(CertOption::Permit(p));
        }
    }
    if let Some(cmd) = strip_prefix_ci(s, "force-command=") {
        return force_command(cmd);
    }
    if let Some(list) = strip_prefix_ci(s, "source-address=") {
        return source_address(list);
    }
    let (critical, rest) = if let Some(rest) = strip_prefix_ci(s, "critical:") {
        (true, rest)
    } else if let Some(rest) = strip_prefix_ci(s, "extension:") {
        (false, rest)
    } else {
        bail!(
            "unknown certificate option `{}`; valid options: {VALID_OPTIONS}",
            show(s)
        );
    };
    let (name, value) = match rest.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (rest, None),
    };
    let kind = if critical {
        "critical option"
    } else {
        "extension"
    };
    if name.is_empty() {
        bail!(
            "{kind} in `{}` has no name; write e.g. `{}:NAME` or `{}:NAME=VALUE`",
            show(s),
            if critical { "critical" } else { "extension" },
            if critical { "critical" } else { "extension" }
        );
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "{kind} name `{}` contains whitespace or a control character ({}); remove it",
            show(name),
            c.escape_debug()
        );
    }
    let value = value.unwrap_or("");
    if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
        bail!(
            "value of {kind} `{}` contains a control character ({}); remove it",
            show(name),
            c.escape_debug()
        );
    }
    if critical {
        match name {
            "force-command" => return force_command(value),
            "source-address" => return source_address(value),
            "verify-required" if value.is_empty() => return Ok(CertOption::VerifyRequired),
            _ => {}
        }
    }
    let (name, value) = (name.to_owned(), value.to_owned());
    Ok(if critical {
        CertOption::Critical { name, value }
    } else {
        CertOption::Extension { name, value }
    })
}

/// Refuse options that contradict each other: the same critical option set twice with different
/// values (e.g. two `force-command`s). ssh-keygen refuses a second `force-command` or
/// `source-address` too; silently keeping one of two restrictions would be worse than stopping.
/// Extensions cannot conflict: the last one given wins.
pub fn check_options(options: &[CertOption]) -> Result<()> {
    match fold_options(options).conflict {
        Some((name, first, second)) => bail!(
            "critical option `{}` given twice with different values (`{}` and `{}`); give it once",
            show(&name),
            show(&first),
            show(&second)
        ),
        None => Ok(()),
    }
}

/// Build the default key id:
/// `sshbreak:<principals joined by ,>:<local_user>@<hostname>:<UTC time as YYYYMMDDTHHMMSSZ>[:<reason>]`.
///
/// sshd logs the key id with every login, so it records who asked, for which accounts, when and
/// why. Every part is sanitized (control characters become spaces, runs of whitespace collapse,
/// the ends are trimmed), the reason is cut to 200 characters and dropped if empty, a long
/// principal list is shortened to `a,b,+N more`, and the whole id is cut to [`MAX_KEY_ID_LEN`]
/// bytes, so the result always passes [`check_key_id`].
pub fn default_key_id(
    principals: &[String],
    local_user: &str,
    hostname: &str,
    now: u64,
    reason: Option<&str>,
) -> String {
    const PRINCIPALS_BUDGET: usize = 256;
    let mut joined = String::new();
    for (i, p) in principals.iter().enumerate() {
        let p = sanitize(p, MAX_PRINCIPAL_LEN);
        let sep = usize::from(!joined.is_empty());
        if joined.len() + sep + p.len() > PRINCIPALS_BUDGET {
            joined.push_str(&format!(
                "{}+{} more",
                if joined.is_empty() { "" } else { "," },
                principals.len() - i
            ));
            break;
        }
        if sep == 1 {
            joined.push(',');
        }
        joined.push_str(&p);
    }
    let mut id = format!(
        "sshbreak:{joined}:{}@{}:{}",
        sanitize(local_user, 64),
        sanitize(hostname, 253),
        crate::timefmt::compact(now)
    );
    if let Some(reason) = reason.map(|r| sanitize(r, MAX_REASON_CHARS))
        && !reason.is_empty()
    {
        id.push(':');
        id.push_str(&reason);
    }
    truncate_bytes(&mut id, MAX_KEY_ID_LEN);
    id
}

/// Check a key id given by the user: non-empty, at most [`MAX_KEY_ID_LEN`] bytes, and without
/// control characters, because sshd writes it into its log line and a newline there forges log
/// entries.
pub fn check_key_id(id: &str) -> Result<()> {
    if id.is_empty() {
        bail!(
            "empty key id; sshd logs the key id as the audit trail, so give one or leave the default"
        );
    }
    if id.len() > MAX_KEY_ID_LEN {
        bail!(
            "key id is {} bytes, more than {MAX_KEY_ID_LEN}; shorten it",
            id.len()
        );
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        bail!(
            "key id contains a control character ({}), which would garble sshd's log; remove it",
            c.escape_debug()
        );
    }
    Ok(())
}

/// Critical options or extensions as sorted `(name, value)` pairs; an empty value is a flag.
pub type OptionList = Vec<(String, String)>;

/// Everything that goes into one user certificate apart from the subject key and the nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRequest {
    /// Accounts the certificate is valid for (from [`parse_principals`]).
    pub principals: Vec<String>,
    /// Validity window (from [`parse_validity`], checked with [`check_validity`]).
    pub validity: Validity,
    /// Key id (from [`default_key_id`] or checked with [`check_key_id`]).
    pub key_id: String,
    /// Serial number; must not be zero.
    pub serial: u64,
    /// `-O` options in the order given.
    pub options: Vec<CertOption>,
}

/// Turn a request into a certificate builder for a user certificate on `subject`.
///
/// Re-checks what can be checked without the clock (principals, key id, serial, a non-empty window,
/// conflicting options), because a `CertRequest` can be built by hand; the caller is still
/// responsible for [`check_validity`], which needs `now` and the user's `allow_long` choice.
/// Serial 0 is refused: it is what a certificate without a serial carries, and sshd's log line and
/// a KRL's serial revocation both rely on it being meaningful.
pub fn builder(req: &CertRequest, subject: KeyData, nonce: [u8; 32]) -> Result<Builder> {
    if req.serial == 0 {
        bail!(
            "certificate serial is 0; use a non-zero serial so sshd's log and a revocation list can name this certificate"
        );
    }
    if req.principals.is_empty() {
        bail!(
            "no principals given; a certificate without principals is valid for every account, so name the accounts"
        );
    }
    if req.principals.len() > MAX_PRINCIPALS {
        bail!(
            "{} principals given, more than the {MAX_PRINCIPALS} a certificate may hold; issue several certificates",
            req.principals.len()
        );
    }
    for p in &req.principals {
        if p.is_empty() {
            bail!("empty principal in the request; every principal must name an account");
        }
        check_principal(p)?;
    }
    check_key_id(&req.key_id)?;
    let Validity { after, before } = req.validity;
    if after >= before {
        bail!(
            "validity window is empty: it starts {} and ends {}; the end must come after the start",
            crate::timefmt::iso(after),
            crate::timefmt::iso(before)
        );
    }
    check_options(&req.options)?;

    let mut b = Builder::new(nonce, subject, after, before)
        .context("cannot start the certificate (invalid validity window)")?;
    b.serial(req.serial).context("cannot set the serial")?;
    b.cert_type(CertType::User)
        .context("cannot set the certificate type")?;
    b.key_id(req.key_id.as_str())
        .context("cannot set the key id")?;
    for p in &req.principals {
        b.valid_principal(p.as_str())
            .context("cannot add a principal")?;
    }
    let folded = fold_options(&req.options);
    for (name, value) in folded.critical {
        b.critical_option(name, value)
            .context("cannot add a critical option")?;
    }
    for (name, value) in folded.extensions {
        b.extension(name, value)
            .context("cannot add an extension")?;
    }
    Ok(b)
}

/// The effective critical options and extensions after applying options, as sorted (name, value) lists — used by `issue --json` and tests.
///
/// Starts from ssh-keygen's defaults (no critical options; all five `permit-*` extensions) and
/// applies the options in order. Where a critical option is given twice, the last value is shown;
/// [`check_options`] (and [`builder`]) refuse that case. Sorting is by byte order, which is the
/// order OpenSSH requires on the wire.
pub fn effective_options(options: &[CertOption]) -> (OptionList, OptionList) {
    let folded = fold_options(options);
    (
        folded.critical.into_iter().collect(),
        folded.extensions.into_iter().collect(),
    )
}

/// Render a number of seconds as a compact duration, e.g. `1d2h3m4s`, `10m`, `0s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Internals

/// Options folded into maps. BTreeMap keeps names in byte order, as OpenSSH's wire format needs.
struct Folded {
    critical: BTreeMap<String, String>,
    extensions: BTreeMap<String, String>,
    /// First critical option set twice with different values: (name, first value, second value).
    conflict: Option<(String, String, String)>,
}

fn fold_options(options: &[CertOption]) -> Folded {
    let mut f = Folded {
        critical: BTreeMap::new(),
        extensions: Permission::ALL
            .iter()
            .map(|p| (p.extension_name().to_owned(), String::new()))
            .collect(),
        conflict: None,
    };
    let set_critical = |f: &mut Folded, name: &str, value: &str| {
        if let Some(old) = f.critical.insert(name.to_owned(), value.to_owned())
            && old != value
            && f.conflict.is_none()
        {
            f.conflict = Some((name.to_owned(), old, value.to_owned()));
        }
    };
    for option in options {
        match option {
            CertOption::Clear => f.extensions.clear(),
            CertOption::Deny(p) => {
                f.extensions.remove(p.extension_name());
            }
            CertOption::Permit(p) => {
                f.extensions
                    .insert(p.extension_name().to_owned(), String::new());
            }
            CertOption::ForceCommand(cmd) => set_critical(&mut f, "force-command", cmd),
            CertOption::SourceAddress(list) => set_critical(&mut f, "source-address", list),
            CertOption::VerifyRequired => set_critical(&mut f, "verify-required", ""),
            CertOption::NoVerifyRequired => {
                f.critical.remove("verify-required");
            }
            CertOption::NoTouchRequired => {
                f.extensions
                    .insert("no-touch-required".to_owned(), String::new());
            }
            CertOption::TouchRequired => {
                f.extensions.remove("no-touch-required");
            }
            CertOption::Extension { name, value } => {
                f.extensions.insert(name.clone(), value.clone());
            }
            CertOption::Critical { name, value } => set_critical(&mut f, name, value),
        }
    }
    f
}

fn force_command(cmd: &str) -> Result<CertOption> {
    if cmd.is_empty() {
        bail!("empty force-command; give the command to run, e.g. `force-command=/usr/bin/true`");
    }
    // A newline in a forced command is almost always a paste accident, and ssh-keygen -L and
    // sshd's log print the command on one line, hiding what follows it.
    if let Some(c) = cmd.chars().find(|c| c.is_control() && *c != '\t') {
        bail!(
            "force-command contains a control character ({}); put multi-line logic in a script on the host",
            c.escape_debug()
        );
    }
    Ok(CertOption::ForceCommand(cmd.to_owned()))
}

fn source_address(list: &str) -> Result<CertOption> {
    check_source_address(list)?;
    Ok(CertOption::SourceAddress(list.to_owned()))
}

/// Validate a source-address list as strictly as sshd does, so that a certificate is not
/// rejected at login time, in an emergency, for a typo made at issue time.
fn check_source_address(list: &str) -> Result<()> {
    if list.is_empty() {
        bail!(
            "empty source-address; give addresses or CIDR blocks, e.g. `source-address=192.0.2.0/24,2001:db8::/32`"
        );
    }
    for entry in list.split(',') {
        if entry.is_empty() {
            bail!(
                "empty entry in source-address `{}`; remove the extra comma",
                show(list)
            );
        }
        if entry.len() > MAX_CIDR_ENTRY_LEN {
            bail!(
                "source-address entry `{}` is too long for an address; write e.g. `192.0.2.0/24`",
                show(entry)
            );
        }
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            anyhow!(
                "source-address entry `{}` is not an IP address or CIDR block (host names are not allowed); write e.g. `192.0.2.0/24` or `2001:db8::/32`",
                show(entry)
            )
        })?;
        let max: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let len = match prefix {
            None => max,
            Some(p) => {
                let len = if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                    p.parse::<u32>().ok()
                } else {
                    None
                };
                match len {
                    Some(len) if len <= max => len,
                    _ => bail!(
                        "source-address entry `{}` has an invalid prefix length; use /0 to /{max} for {}",
                        show(entry),
                        if ip.is_ipv4() { "IPv4" } else { "IPv6" }
                    ),
                }
            }
        };
        // sshd treats host bits set beyond the prefix ("inconsistent mask length") as an invalid
        // list and refuses the certificate; say so now and suggest the network address.
        let network = match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        if network != ip {
            bail!(
                "source-address entry `{}` has bits set after the /{len} prefix, which sshd rejects; did you mean `{network}/{len}`?",
                show(entry)
            );
        }
    }
    Ok(())
}

fn check_principal(p: &str) -> Result<()> {
    if p.len() > MAX_PRINCIPAL_LEN {
        bail!(
            "principal `{}…` is {} bytes, more than {MAX_PRINCIPAL_LEN}; principals are account names",
            show(&sanitize(p, 32)),
            p.len()
        );
    }
    if let Some(c) = p.chars().find(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "principal `{}` contains whitespace or a control character ({}); list accounts separated by commas only, e.g. `ubuntu,carl`",
            show(p),
            c.escape_debug()
        );
    }
    if p.contains(['*', '?']) {
        bail!(
            "principal `{}` contains `*` or `?`, but sshd compares principals literally (no wildcards); name each account",
            show(p)
        );
    }
    Ok(())
}

/// Start of a `START:END` window.
fn parse_start(s: &str, now: u64) -> Result<u64> {
    if s.eq_ignore_ascii_case("always") {
        return Ok(0);
    }
    if s.eq_ignore_ascii_case("forever") {
        bail!(
            "`forever` is only an end; for the start use `always`, `-5m`, or a date such as `20261204`"
        );
    }
    let t = parse_time(s, now, "start")?;
    if t > MAX_TIMESTAMP {
        bail!(
            "validity start `{}` is beyond what a certificate can represent; use a nearer time",
            show(s)
        );
    }
    Ok(t)
}

/// End of a `START:END` window.
fn parse_end(s: &str, now: u64) -> Result<u64> {
    if s.eq_ignore_ascii_case("forever") {
        return Ok(FOREVER);
    }
    if s.eq_ignore_ascii_case("always") {
        bail!(
            "`always` is only a start; for the end use `forever`, `+1h`, or a date such as `20261205`"
        );
    }
    let t = parse_time(s, now, "end")?;
    if t > MAX_TIMESTAMP && t != FOREVER {
        bail!(
            "validity end `{}` is beyond what a certificate can represent; use `forever` if you mean no end",
            show(s)
        );
    }
    Ok(t)
}

/// A relative, absolute or hexadecimal time (one side of `START:END`).
fn parse_time(s: &str, now: u64, side: &str) -> Result<u64> {
    if let Some(d) = s.strip_prefix('+') {
        return add_to_now(now, d, s);
    }
    if let Some(d) = s.strip_prefix('-') {
        let secs = parse_duration(d)?;
        return now.checked_sub(secs).ok_or_else(|| {
            anyhow!(
                "validity {side} `{}` reaches before 1970; use a shorter time",
                show(s)
            )
        });
    }
    if let Some(hex) = strip_prefix_ci(s, "0x") {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "invalid hexadecimal validity {side} `{}`; write up to 16 hex digits after `0x`",
                show(s)
            );
        }
        return u64::from_str_radix(hex, 16).map_err(|_| {
            anyhow!(
                "invalid hexadecimal validity {side} `{}`; write up to 16 hex digits after `0x`",
                show(s)
            )
        });
    }
    parse_absolute(s).map_err(|why| {
        let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
        anyhow!(
            "invalid validity {side} `{}`{why}; use `-D`/`+D` (e.g. `-5m`, `+1h`), a UTC date `YYYYMMDD[HHMM[SS]][Z]`, `0xHEX`, or `{}`",
            show(s),
            if side == "start" { "always" } else { "forever" }
        )
    })
}

/// `now + duration`, with errors naming the whole spec.
fn add_to_now(now: u64, duration: &str, spec: &str) -> Result<u64> {
    let secs = parse_duration(duration)?;
    let t = now.checked_add(secs).ok_or_else(|| {
        anyhow!(
            "validity `{}` ends too far in the future; use `forever` if you mean no end",
            show(spec)
        )
    })?;
    if t > MAX_TIMESTAMP {
        bail!(
            "validity `{}` ends beyond what a certificate can represent; use `forever` if you mean no end",
            show(spec)
        );
    }
    Ok(t)
}

/// 8, 12 or 14 ASCII digits, optionally followed by `Z`.
fn looks_absolute(s: &str) -> bool {
    let digits = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    matches!(digits.len(), 8 | 12 | 14) && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`, optional `Z`, read as UTC.
///
/// The error is `None` when `s` does not look like a time at all, or says what is wrong with a
/// time that does (`no such date` for 30 February).
fn parse_absolute(s: &str) -> std::result::Result<u64, Option<&'static str>> {
    if !looks_absolute(s) {
        return Err(None);
    }
    let digits = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    // All bytes are ASCII digits (checked above), so every range below is on char boundaries and
    // every field fits its type; `get` and `try_from` keep it panic-free regardless.
    let field = |from: usize, to: usize| -> Option<u16> {
        if digits.len() < to && from >= 8 {
            return Some(0); // missing time of day, or missing seconds
        }
        digits.get(from..to)?.parse().ok()
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        field(0, 4),
        field(4, 6),
        field(6, 8),
        field(8, 10),
        field(10, 12),
        field(12, 14),
    ) else {
        return Err(None);
    };
    let small = |n: u16| u8::try_from(n).map_err(|_| Some("out of range"));
    let month = time::Month::try_from(small(month)?).map_err(|_| Some("no such month"))?;
    let date = time::Date::from_calendar_date(i32::from(year), month, small(day)?)
        .map_err(|_| Some("no such date"))?;
    let clock = time::Time::from_hms(small(hour)?, small(minute)?, small(second)?)
        .map_err(|_| Some("no such time of day"))?;
    let ts = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    u64::try_from(ts).map_err(|_| Some("before 1970"))
}

pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Escape user input for an error message so that the message stays on one line.
fn show(s: &str) -> String {
    s.escape_debug().to_string()
}

/// Control characters become spaces, whitespace runs collapse to one space, the ends are trimmed,
/// and at most `max_chars` characters are kept.
fn sanitize(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out.chars()
        .take(max_chars)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Cut a string to at most `max` bytes at a character boundary.
fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ssh_key::certificate::Certificate;
    use ssh_key::private::{Ed25519Keypair, PrivateKey};
    use ssh_key::public::Ed25519PublicKey;

    /// Friday 2026-12-04 16:00:00 UTC.
    const NOW: u64 = 1_796_400_000;
    /// 2026-12-04 00:00:00 UTC, the start of NOW's day.
    const TODAY: u64 = NOW - 16 * 3600;
    const B: u64 = DEFAULT_BACKDATE_SECS;

    fn v(after: u64, before: u64) -> Validity {
        Validity { after, before }
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        let msg = format!("{:#}", r.expect_err("expected an error"));
        assert!(
            !msg.contains('\n'),
            "error message is not one line: {msg:?}"
        );
        msg
    }

    fn validity(spec: &str) -> Result<Validity> {
        parse_validity(spec, NOW, B)
    }

    fn opts(list: &[&str]) -> Vec<CertOption> {
        list.iter().map(|s| parse_option(s).unwrap()).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn default_extensions() -> Vec<(String, String)> {
        // Byte order: capital `X` sorts before lower-case letters, as OpenSSH wants.
        pairs(&[
            ("permit-X11-forwarding", ""),
            ("permit-agent-forwarding", ""),
            ("permit-port-forwarding", ""),
            ("permit-pty", ""),
            ("permit-user-rc", ""),
        ])
    }

    // --- durations ------------------------------------------------------------------------

    #[test]
    fn a_short_window_far_in_the_future_is_refused_without_allow_long() {
        let future = parse_validity("+52w:+52w23h", NOW, DEFAULT_BACKDATE_SECS).unwrap();
        let err = check_validity(&future, NOW, false).unwrap_err().to_string();
        assert!(err.contains("--allow-long-validity"), "{err}");
        assert!(check_validity(&future, NOW, true).is_ok());
        let dated = parse_validity("20301204:20301205", NOW, DEFAULT_BACKDATE_SECS).unwrap();
        assert!(check_validity(&dated, NOW, false).is_err());
        // Starting in an hour for an hour is fine: usable until two hours from now.
        let soon = parse_validity("+1h:+2h", NOW, DEFAULT_BACKDATE_SECS).unwrap();
        assert!(check_validity(&soon, NOW, false).is_ok());
        // The plain 24h form stays allowed.
        let day = parse_validity("24h", NOW, DEFAULT_BACKDATE_SECS).unwrap();
        assert!(check_validity(&day, NOW, false).is_ok());
    }

    #[test]
    fn durations() {
        for (s, want) in [
            ("90", 90),
            ("90s", 90),
            ("90S", 90),
            ("10m", 600),
            ("10M", 600),
            ("1h30m", 5400),
            ("1H30m", 5400),
            ("30m1h", 5400),
            ("1m30", 90),
            ("1m1m", 120),
            ("2d", 2 * 86_400),
            ("1w", 7 * 86_400),
            (
                "1w2d3h4m5s",
                7 * 86_400 + 2 * 86_400 + 3 * 3600 + 4 * 60 + 5,
            ),
            ("0", 0),
            ("0s", 0),
            ("007m", 420),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_duration(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn bad_durations() {
        assert!(err(parse_duration("")).contains("empty duration"));
        for s in [
            "m", "h10", "10x", "1 h", " 10m", "10m ", "-5m", "+5m", "1.5h", "10mm", "１０m", "10µ",
            "1,5h",
        ] {
            err(parse_duration(s));
        }
        // Overflow of the number itself, of the multiplication, and of the sum.
        assert!(err(parse_duration("99999999999999999999w")).contains("too large"));
        assert!(err(parse_duration("9999999999999999999w")).contains("too large"));
        assert!(err(parse_duration("18446744073709551615s1s")).contains("too large"));
        assert!(err(parse_duration("18446744073709551615 ")).contains("not a unit"));
    }

    #[test]
    fn format_durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(90), "1m30s");
        assert_eq!(format_duration(600), "10m");
        assert_eq!(format_duration(86_400 + 3600 + 60 + 1), "1d1h1m1s");
        assert_eq!(
            parse_duration(&format_duration(u64::MAX)).unwrap(),
            u64::MAX
        );
    }

    // --- validity parsing -----------------------------------------------------------------

    #[test]
    fn bare_and_plus_durations_are_backdated() {
        assert_eq!(validity("10m").unwrap(), v(NOW - B, NOW + 600));
        assert_eq!(validity(DEFAULT_VALIDITY).unwrap(), v(NOW - B, NOW + 600));
        assert_eq!(validity("+10m").unwrap(), v(NOW - B, NOW + 600));
        assert_eq!(validity("1h30m").unwrap(), v(NOW - B, NOW + 5400));
        assert_eq!(validity("90").unwrap(), v(NOW - B, NOW + 90));
        assert_eq!(parse_validity("10m", NOW, 0).unwrap(), v(NOW, NOW + 600));
        assert_eq!(validity("forever").unwrap(), v(NOW - B, FOREVER));
        assert_eq!(validity("FOREVER").unwrap(), v(NOW - B, FOREVER));
    }

    #[test]
    fn relative_windows_are_not_backdated() {
        assert_eq!(validity("-5m:+60m").unwrap(), v(NOW - 300, NOW + 3600));
        assert_eq!(validity("-1m:+1h").unwrap(), v(NOW - 60, NOW + 3600));
        assert_eq!(validity("+0:+10m").unwrap(), v(NOW, NOW + 600));
        // Both ends are relative to now (current ssh-keygen), not the end to the start.
        assert_eq!(validity("+1h:+2h").unwrap(), v(NOW + 3600, NOW + 7200));
        assert!(err(validity("-2h:-1s")).contains("already be expired"));
        assert_eq!(validity("-1h:+1s").unwrap(), v(NOW - 3600, NOW + 1));
    }

    #[test]
    fn always_and_forever() {
        assert_eq!(validity("always:forever").unwrap(), v(0, FOREVER));
        assert_eq!(validity("Always:Forever").unwrap(), v(0, FOREVER));
        assert_eq!(validity("always:+1h").unwrap(), v(0, NOW + 3600));
        assert_eq!(validity("-5m:forever").unwrap(), v(NOW - 300, FOREVER));
        assert!(err(validity("always")).contains("always:forever"));
        assert!(err(validity("forever:+1h")).contains("only an end"));
        assert!(err(validity("-5m:always")).contains("only a start"));
    }

    #[test]
    fn absolute_times_are_utc() {
        assert_eq!(
            validity("20261204:20261205").unwrap(),
            v(TODAY, TODAY + 86_400)
        );
        assert_eq!(
            validity("20261204Z:20261205Z").unwrap(),
            v(TODAY, TODAY + 86_400)
        );
        assert_eq!(
            validity("202612041530:202612041700").unwrap(),
            v(NOW - 1800, NOW + 3600)
        );
        assert_eq!(
            validity("202612041530Z:202612041700z").unwrap(),
            v(NOW - 1800, NOW + 3600)
        );
        assert_eq!(
            validity("20261204155959:20261204160001").unwrap(),
            v(NOW - 1, NOW + 1)
        );
        assert_eq!(
            validity("20261204155959Z:20261204170030Z").unwrap(),
            v(NOW - 1, NOW + 3630)
        );
        assert_eq!(
            validity("-5m:20261204170000").unwrap(),
            v(NOW - 300, NOW + 3600)
        );
        assert_eq!(validity("always:20261205").unwrap(), v(0, TODAY + 86_400));
        // Leap day exists in 2028.
        assert_eq!(
            validity("-5m:20280229").unwrap().before,
            1_835_395_200 // 2028-02-29 00:00:00 UTC (date -u -d 2028-02-29 +%s)
        );
    }

    #[test]
    fn bad_absolute_times() {
        for (spec, why) in [
            ("20261332:20270101", "start `20261332` (no such month)"),
            ("20261204:20261301", "end `20261301` (no such month)"),
            ("20261200:20261201", "start `20261200` (no such date)"),
            ("20270230:20270301", "(no such date)"), // 30 February
            ("20270229:20270301", "(no such date)"), // 2027 is not a leap year
            ("20261204246000:+1d", "(no such time of day)"),
            ("20261204156000:+1d", "(no such time of day)"),
            ("20261204155960:+1d", "(no such time of day)"), // no leap seconds
            ("19691231:+1h", "(before 1970)"),
            ("00000101:+1h", "(before 1970)"),
            ("2026120:+1d", "start `2026120`; use"), // 7 digits
            ("202612041:+1d", "start `202612041`; use"), // 9 digits
            ("2026120415:+1d", "start `2026120415`; use"), // 10 digits
            ("20261204ZZ:+1d", "start `20261204ZZ`; use"),
            ("Z20261204:+1d", "start `Z20261204`; use"),
            ("2026-12-04:+1d", "start `2026-12-04`; use"),
            ("-5m:2026120416000", "end `2026120416000`; use"), // 13 digits
            ("-5m:20261204T160000", "end `20261204T160000`; use"), // ISO `T`
            ("-5m:later", "end `later`; use"),
        ] {
            let msg = err(validity(spec));
            assert!(msg.contains(why), "{spec}: {msg}");
            assert!(msg.contains("YYYYMMDD[HHMM[SS]][Z]"), "{spec}: {msg}");
        }
        // A lone date is refused, not read as 20 million seconds.
        assert!(err(validity("20261205")).contains("looks like a date"));
        assert!(err(validity("20261205Z")).contains("looks like a date"));
        assert!(err(validity("202612051200")).contains("looks like a date"));
    }

    #[test]
    fn hex_times() {
        assert_eq!(validity("0x0:0xffffffffffffffff").unwrap(), v(0, FOREVER));
        let spec = format!("0x{:x}:0X{:X}", NOW - 60, NOW + 60);
        assert_eq!(validity(&spec).unwrap(), v(NOW - 60, NOW + 60));
        assert_eq!(
            validity("-5m:0x7fffffffffffffff").unwrap(),
            v(NOW - 300, i64::MAX as u64)
        );
        assert!(err(validity("-5m:0x8000000000000000")).contains("beyond"));
        assert!(err(validity("0x8000000000000000:forever")).contains("beyond"));
        for spec in [
            "0x:+1h",
            "0xZZ:+1h",
            "0x11111111111111111:+1h",
            "-5m:0x",
            "0x-1:+1h",
        ] {
            assert!(err(validity(spec)).contains("hexadecimal"), "{spec}");
        }
    }

    #[test]
    fn bad_validity_specs() {
        assert!(err(validity("")).contains("empty validity"));
        for spec in [
            ":",
            ":+1h",
            "+1h:",
            "-5m:+1h:+2h",
            "garbage",
            "10 m",
            "1.5h",
            "+",
            "+-5m",
        ] {
            err(validity(spec));
        }
        assert!(err(validity("-5m")).contains("no end"));
        assert!(err(validity("+2h:+1h")).contains("is empty"));
        assert!(err(validity("+1h:+1h")).contains("is empty"));
        assert!(err(validity("0")).contains("already be expired"));
        assert!(err(validity("+0")).contains("already be expired"));
        assert!(err(validity("-2h:-1h")).contains("already be expired"));
        assert!(err(validity("-2h:+0")).contains("already be expired"));
        assert!(err(validity("20261201:20261202")).contains("already be expired"));
        assert!(err(validity("-99999999999w:+1h")).contains("before 1970"));
        assert!(err(validity("18446744073709551615")).contains("too far"));
        assert!(err(validity("+9223372036854775807")).contains("beyond"));
        assert!(err(parse_validity("10m", 100, 300)).contains("backdate"));
        // Input with a newline stays on one line in the message (checked by `err`).
        err(validity("10m\n:evil"));
    }

    // --- validity policy ------------------------------------------------------------------

    #[test]
    fn validity_limits() {
        let ok = |spec: &str| check_validity(&validity(spec).unwrap(), NOW, false);
        ok("10m").unwrap();
        ok("-5m:+24h").unwrap();
        // The plain `24h` runs from now - 5m: the default backdate is allowed on top of the limit.
        ok("24h").unwrap();
        let msg = err(ok("24h1s"));
        assert!(
            msg.contains("more than the 24h limit (plus 5m backdate)"),
            "{msg}"
        );
        assert!(msg.contains("--allow-long-validity"), "{msg}");
        assert!(err(ok("25h")).contains("1d1h5m long"));
        assert!(err(ok("-6m:+24h")).contains("--allow-long-validity"));
        // A window that started long ago counts in full.
        assert!(err(ok("-2d:+1h")).contains("2d1h long"));
        assert!(err(ok("always:forever")).contains("never expire"));
        assert!(err(ok("forever")).contains("never expire"));
        assert!(err(ok("always:+1h")).contains("since 1970"));

        let long = |spec: &str| check_validity(&validity(spec).unwrap(), NOW, true);
        long("25h").unwrap();
        long("always:forever").unwrap();
        long("forever").unwrap();
        long("-2d:+1h").unwrap();
    }

    #[test]
    fn check_validity_refuses_empty_and_expired_even_when_long_is_allowed() {
        for allow in [false, true] {
            assert!(err(check_validity(&v(NOW, NOW), NOW, allow)).contains("empty"));
            assert!(err(check_validity(&v(NOW + 1, NOW), NOW, allow)).contains("empty"));
            assert!(err(check_validity(&v(NOW - 10, NOW), NOW, allow)).contains("expired"));
        }
        check_validity(&v(NOW - 10, NOW + 1), NOW, false).unwrap();
    }

    // --- principals -----------------------------------------------------------------------

    #[test]
    fn principals() {
        assert_eq!(parse_principals("root").unwrap(), ["root"]);
        assert_eq!(parse_principals("ubuntu,carl").unwrap(), ["ubuntu", "carl"]);
        assert_eq!(
            parse_principals("b,a,b,c,a").unwrap(),
            ["b", "a", "c"],
            "duplicates dropped, first place kept"
        );
        assert_eq!(
            parse_principals("svc-deploy,role:admin,ünïcode")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            parse_principals("a,".repeat(300).trim_end_matches(',')).unwrap(),
            ["a"]
        );
    }

    #[test]
    fn bad_principals() {
        assert!(err(parse_principals("")).contains("valid for every account"));
        for list in ["a,,b", ",a", "a,", ","] {
            assert!(
                err(parse_principals(list)).contains("empty principal"),
                "{list}"
            );
        }
        for list in [
            "ubuntu, carl",
            "a b",
            "a\tb",
            "a\nb",
            "a\u{7}",
            "a\u{0}b",
            "a\u{a0}b",
        ] {
            assert!(
                err(parse_principals(list)).contains("whitespace or a control character"),
                "{list:?}"
            );
        }
        assert!(err(parse_principals("web*")).contains("literally"));
        assert!(err(parse_principals("db?")).contains("literally"));

        let long = "x".repeat(MAX_PRINCIPAL_LEN);
        assert_eq!(parse_principals(&long).unwrap(), [long.as_str()]);
        assert!(err(parse_principals(&format!("{long}x"))).contains("bytes"));

        let names: Vec<String> = (0..MAX_PRINCIPALS).map(|i| format!("u{i}")).collect();
        assert_eq!(
            parse_principals(&names.join(",")).unwrap().len(),
            MAX_PRINCIPALS
        );
        let too_many = format!("{},extra", names.join(","));
        assert!(err(parse_principals(&too_many)).contains("more than the 256"));
    }

    // --- options --------------------------------------------------------------------------

    #[test]
    fn option_parsing() {
        use CertOption::*;
        use Permission::*;
        for (s, want) in [
            ("clear", Clear),
            ("CLEAR", Clear),
            ("no-x11-forwarding", Deny(X11Forwarding)),
            ("no-agent-forwarding", Deny(AgentForwarding)),
            ("no-port-forwarding", Deny(PortForwarding)),
            ("no-pty", Deny(Pty)),
            ("No-Pty", Deny(Pty)),
            ("no-user-rc", Deny(UserRc)),
            ("permit-x11-forwarding", Permit(X11Forwarding)),
            ("permit-X11-forwarding", Permit(X11Forwarding)),
            ("permit-agent-forwarding", Permit(AgentForwarding)),
            ("permit-port-forwarding", Permit(PortForwarding)),
            ("permit-pty", Permit(Pty)),
            ("permit-user-rc", Permit(UserRc)),
            ("verify-required", VerifyRequired),
            ("no-verify-required", NoVerifyRequired),
            ("no-touch-required", NoTouchRequired),
            ("touch-required", TouchRequired),
            (
                "force-command=/usr/bin/true",
                ForceCommand("/usr/bin/true".into()),
            ),
            ("Force-Command=echo Hi", ForceCommand("echo Hi".into())),
            ("force-command=a=b", ForceCommand("a=b".into())),
            (
                "source-address=10.0.0.0/8",
                SourceAddress("10.0.0.0/8".into()),
            ),
            ("critical:force-command=ls", ForceCommand("ls".into())),
            ("critical:source-address=::1", SourceAddress("::1".into())),
            ("critical:verify-required", VerifyRequired),
            (
                "extension:login@example.com=carl",
                Extension {
                    name: "login@example.com".into(),
                    value: "carl".into(),
                },
            ),
            (
                "Extension:flag@example.com",
                Extension {
                    name: "flag@example.com".into(),
                    value: String::new(),
                },
            ),
            (
                "extension:k@example.com=a=b c",
                Extension {
                    name: "k@example.com".into(),
                    value: "a=b c".into(),
                },
            ),
            (
                "critical:x@example.com=1",
                Critical {
                    name: "x@example.com".into(),
                    value: "1".into(),
                },
            ),
            (
                "critical:y@example.com",
                Critical {
                    name: "y@example.com".into(),
                    value: String::new(),
                },
            ),
        ] {
            assert_eq!(parse_option(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn bad_options() {
        let msg = err(parse_option("bogus"));
        assert!(msg.contains("unknown certificate option `bogus`"), "{msg}");
        assert!(msg.contains("force-command=CMD") && msg.contains("extension:NAME[=VALUE]"));
        for s in [
            "",
            "no-foo",
            "permit-everything",
            "no-pty ",
            "force",
            "extension",
            "critical",
        ] {
            assert!(err(parse_option(s)).contains("valid options"), "{s:?}");
        }
        assert!(err(parse_option("force-command")).contains("needs a value"));
        assert!(err(parse_option("source-address")).contains("needs a value"));
        assert!(err(parse_option("force-command=")).contains("empty force-command"));
        assert!(err(parse_option("critical:force-command")).contains("empty force-command"));
        assert!(err(parse_option("force-command=a\nb")).contains("control character"));
        assert!(err(parse_option("source-address=")).contains("empty source-address"));
        assert!(err(parse_option("extension:")).contains("no name"));
        assert!(err(parse_option("extension:=v")).contains("no name"));
        assert!(err(parse_option("critical:=v")).contains("no name"));
        assert!(err(parse_option("extension:a b")).contains("whitespace"));
        assert!(err(parse_option("extension:a\u{0}")).contains("control"));
        assert!(err(parse_option("critical:x=a\nb")).contains("control character"));
    }

    #[test]
    fn default_options() {
        let (crit, ext) = effective_options(&[]);
        assert!(crit.is_empty());
        assert_eq!(ext, default_extensions());
    }

    #[test]
    fn option_effects() {
        let eff = |list: &[&str]| effective_options(&opts(list));

        assert_eq!(eff(&["clear"]), (vec![], vec![]));
        assert_eq!(
            eff(&["clear", "permit-pty"]),
            (vec![], pairs(&[("permit-pty", "")]))
        );
        assert_eq!(
            eff(&["permit-pty", "clear"]),
            (vec![], vec![]),
            "applied in order"
        );
        assert_eq!(
            eff(&["no-pty", "no-x11-forwarding"]).1,
            pairs(&[
                ("permit-agent-forwarding", ""),
                ("permit-port-forwarding", ""),
                ("permit-user-rc", ""),
            ])
        );
        for (opt, name) in [
            ("no-x11-forwarding", "permit-X11-forwarding"),
            ("no-agent-forwarding", "permit-agent-forwarding"),
            ("no-port-forwarding", "permit-port-forwarding"),
            ("no-pty", "permit-pty"),
            ("no-user-rc", "permit-user-rc"),
        ] {
            let ext = eff(&[opt]).1;
            assert_eq!(ext.len(), 4, "{opt}");
            assert!(!ext.iter().any(|(n, _)| n == name), "{opt}");
            let permit = opt.replacen("no-", "permit-", 1);
            assert_eq!(eff(&[opt, &permit]).1, default_extensions(), "{permit}");
        }
        assert_eq!(eff(&["no-pty", "no-pty"]).1.len(), 4);

        assert_eq!(
            eff(&["force-command=/usr/bin/true"]).0,
            pairs(&[("force-command", "/usr/bin/true")])
        );
        assert_eq!(
            eff(&["source-address=10.0.0.0/8,::1/128", "verify-required"]).0,
            pairs(&[
                ("source-address", "10.0.0.0/8,::1/128"),
                ("verify-required", "")
            ])
        );
        assert_eq!(eff(&["verify-required", "no-verify-required"]).0, vec![]);
        // clear never widens: critical options survive it.
        assert_eq!(
            eff(&["force-command=ls", "verify-required", "clear"]),
            (
                pairs(&[("force-command", "ls"), ("verify-required", "")]),
                vec![]
            )
        );
        assert_eq!(
            eff(&["clear", "no-touch-required"]).1,
            pairs(&[("no-touch-required", "")])
        );
        assert_eq!(
            eff(&["clear", "no-touch-required", "touch-required"]).1,
            vec![]
        );
        assert_eq!(
            eff(&[
                "clear",
                "extension:b@example.com=2",
                "extension:a@example.com"
            ])
            .1,
            pairs(&[("a@example.com", ""), ("b@example.com", "2")]),
            "sorted by name"
        );
        assert_eq!(
            eff(&[
                "clear",
                "extension:a@example.com=1",
                "extension:a@example.com=2"
            ])
            .1,
            pairs(&[("a@example.com", "2")]),
            "last extension wins"
        );
        assert_eq!(
            eff(&["critical:z@example.com=1", "force-command=ls"]).0,
            pairs(&[("force-command", "ls"), ("z@example.com", "1")])
        );
        assert_eq!(
            eff(&["extension:permit-pty", "no-pty"]).1.len(),
            4,
            "a generic extension and the named option are the same thing"
        );
    }

    #[test]
    fn conflicting_critical_options() {
        check_options(&opts(&["force-command=ls", "force-command=ls"])).unwrap();
        check_options(&opts(&["verify-required", "critical:verify-required"])).unwrap();
        let msg = err(check_options(&opts(&[
            "force-command=ls",
            "critical:force-command=rm",
        ])));
        assert!(
            msg.contains("`force-command` given twice") && msg.contains("`ls` and `rm`"),
            "{msg}"
        );
        err(check_options(&opts(&[
            "source-address=::1",
            "source-address=10.0.0.0/8",
        ])));
        err(check_options(&opts(&[
            "critical:x@example.com=1",
            "critical:x@example.com",
        ])));
        // Extensions never conflict.
        check_options(&opts(&[
            "extension:a@example.com=1",
            "extension:a@example.com=2",
        ]))
        .unwrap();
    }

    #[test]
    fn source_addresses() {
        for good in [
            "10.0.0.0/8",
            "::1/128",
            "::1",
            "192.0.2.1",
            "192.0.2.1/32",
            "0.0.0.0/0",
            "::/0",
            "2001:db8::/32",
            "2001:DB8::/32",
            "10.0.0.0/8,::1/128,192.0.2.0/24",
            "::ffff:10.0.0.1",
            "10.0.0.0/08",
        ] {
            let opt = format!("source-address={good}");
            assert_eq!(
                parse_option(&opt).unwrap(),
                CertOption::SourceAddress(good.into())
            );
        }
        for (bad, why) in [
            ("10.0.0.0/33", "prefix length"),
            ("::1/129", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("10.0.0.0/99999999999999999999", "prefix length"),
            ("example.com", "not an IP address"),
            ("localhost", "not an IP address"),
            ("10.0.0", "not an IP address"),
            ("010.0.0.1", "not an IP address"),
            ("256.0.0.0/8", "not an IP address"),
            ("fe80::1%eth0", "not an IP address"),
            ("*", "not an IP address"),
            ("!10.0.0.0/8", "not an IP address"),
            ("10.0.0.0/8 ", "prefix length"),
            ("10.0.0.0/8, ::1/128", "not an IP address"),
            ("10.0.0.0/8,", "empty entry"),
            (",10.0.0.0/8", "empty entry"),
            ("10.0.0.1/8", "did you mean `10.0.0.0/8`"),
            ("2001:db8::1/32", "did you mean `2001:db8::/32`"),
            (
                "0000:0000:0000:0000:0000:ffff:255.255.255.255/0128",
                "too long",
            ),
        ] {
            let msg = err(parse_option(&format!("source-address={bad}")));
            assert!(msg.contains(why), "{bad}: {msg}");
        }
    }

    // --- key ids --------------------------------------------------------------------------

    #[test]
    fn key_id_format() {
        let ps = vec!["root".to_string(), "ubuntu".to_string()];
        assert_eq!(
            default_key_id(
                &ps,
                "carl",
                "laptop.example.com",
                NOW,
                Some("disk full on db1")
            ),
            "sshbreak:root,ubuntu:carl@laptop.example.com:20261204T160000Z:disk full on db1"
        );
        assert_eq!(
            default_key_id(&ps, "carl", "laptop", NOW, None),
            "sshbreak:root,ubuntu:carl@laptop:20261204T160000Z"
        );
        assert_eq!(
            default_key_id(&ps, "carl", "laptop", NOW + 59, Some("  \t\n ")),
            "sshbreak:root,ubuntu:carl@laptop:20261204T160059Z",
            "an empty reason is dropped"
        );
        assert_eq!(
            default_key_id(
                &ps,
                "carl",
                "laptop",
                0,
                Some(" line1\r\nline2\t\u{7}end:x ")
            ),
            "sshbreak:root,ubuntu:carl@laptop:19700101T000000Z:line1 line2 end:x"
        );
        assert_eq!(
            default_key_id(&ps, "ca\nrl", "lap\u{1b}[31mtop", u64::MAX, None),
            "sshbreak:root,ubuntu:ca rl@lap [31mtop:forever"
        );
        let long_reason = "é".repeat(300);
        let id = default_key_id(&ps, "carl", "laptop", NOW, Some(&long_reason));
        assert!(id.ends_with(&format!(":{}", "é".repeat(200))), "{id}");
        check_key_id(&id).unwrap();
    }

    #[test]
    fn key_id_with_many_principals_is_bounded() {
        let ps: Vec<String> = (0..256).map(|i| format!("user{i:03}")).collect();
        let id = default_key_id(&ps, "carl", "laptop", NOW, Some("x"));
        assert!(id.starts_with("sshbreak:user000,user001,"), "{id}");
        assert!(id.contains(",+224 more:carl@laptop:"), "{id}");
        check_key_id(&id).unwrap();
        let huge = vec!["ü".repeat(256)];
        let id = default_key_id(
            &huge,
            &"u".repeat(999),
            &"h".repeat(999),
            NOW,
            Some(&"r".repeat(999)),
        );
        assert!(id.len() <= MAX_KEY_ID_LEN);
        check_key_id(&id).unwrap();
    }

    #[test]
    fn key_id_checks() {
        check_key_id("sshbreak:root:carl@laptop:20261204T160000Z").unwrap();
        check_key_id("ünïcode id with spaces").unwrap();
        check_key_id(&"x".repeat(MAX_KEY_ID_LEN)).unwrap();
        assert!(err(check_key_id("")).contains("empty key id"));
        assert!(err(check_key_id(&"x".repeat(MAX_KEY_ID_LEN + 1))).contains("1025 bytes"));
        assert!(err(check_key_id("a\nb")).contains("control character"));
        assert!(err(check_key_id("a\u{0}b")).contains("control character"));
        assert!(err(check_key_id("a\u{85}b")).contains("control character"));
    }

    // --- builder and signing --------------------------------------------------------------

    fn subject() -> KeyData {
        KeyData::from(Ed25519PublicKey::from(&Ed25519Keypair::from_seed(
            &[9u8; 32],
        )))
    }

    fn request() -> CertRequest {
        CertRequest {
            principals: parse_principals("root,ubuntu").unwrap(),
            validity: validity("10m").unwrap(),
            key_id: default_key_id(
                &["root".into(), "ubuntu".into()],
                "carl",
                "laptop",
                NOW,
                Some("test"),
            ),
            serial: 4242,
            options: opts(&[
                "no-x11-forwarding",
                "force-command=/usr/bin/printf 'hello world'",
                "source-address=10.0.0.0/8,::1/128",
                "verify-required",
                "extension:login@example.com=carl",
                "extension:flag@example.com",
            ]),
        }
    }

    #[test]
    fn builder_refuses_bad_requests() {
        let nonce = [1u8; 32];
        let mut r = request();
        r.serial = 0;
        assert!(err(builder(&r, subject(), nonce)).contains("serial is 0"));
        let mut r = request();
        r.principals.clear();
        assert!(err(builder(&r, subject(), nonce)).contains("valid for every account"));
        let mut r = request();
        r.principals.push(String::new());
        assert!(err(builder(&r, subject(), nonce)).contains("empty principal"));
        let mut r = request();
        r.principals.push("a b".into());
        assert!(err(builder(&r, subject(), nonce)).contains("whitespace"));
        let mut r = request();
        r.key_id = "x\ny".into();
        assert!(err(builder(&r, subject(), nonce)).contains("control character"));
        let mut r = request();
        r.validity = v(NOW, NOW);
        assert!(err(builder(&r, subject(), nonce)).contains("empty"));
        let mut r = request();
        r.options.push(CertOption::ForceCommand("rm".into()));
        assert!(err(builder(&r, subject(), nonce)).contains("given twice"));
    }

    #[test]
    fn signed_certificate_round_trips() {
        let ca = PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32]));
        let req = request();
        let cert = builder(&req, subject(), [3u8; 32])
            .unwrap()
            .sign(&ca)
            .unwrap();
        let text = cert.to_openssh().unwrap();
        let cert = Certificate::from_openssh(&text).unwrap();

        let ca_fp = ca.public_key().fingerprint(Default::default());
        cert.validate_at(NOW, [&ca_fp]).unwrap();
        assert!(
            cert.validate_at(NOW + 601, [&ca_fp]).is_err(),
            "expired after 10m"
        );
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.valid_principals(), ["root", "ubuntu"]);
        assert_eq!(cert.valid_after(), NOW - B);
        assert_eq!(cert.valid_before(), NOW + 600);
        assert_eq!(cert.serial(), 4242);
        assert_eq!(
            cert.key_id(),
            "sshbreak:root,ubuntu:carl@laptop:20261204T160000Z:test"
        );
        assert_eq!(cert.nonce(), &[3u8; 32]);
        assert_eq!(cert.public_key(), &subject());

        let (crit, ext) = effective_options(&req.options);
        let got_crit: Vec<_> = cert
            .critical_options()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let got_ext: Vec<_> = cert
            .extensions()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got_crit, crit);
        assert_eq!(got_ext, ext);
        assert_eq!(
            crit,
            pairs(&[
                ("force-command", "/usr/bin/printf 'hello world'"),
                ("source-address", "10.0.0.0/8,::1/128"),
                ("verify-required", ""),
            ])
        );
        assert_eq!(
            ext,
            pairs(&[
                ("flag@example.com", ""),
                ("login@example.com", "carl"),
                ("permit-agent-forwarding", ""),
                ("permit-port-forwarding", ""),
                ("permit-pty", ""),
                ("permit-user-rc", ""),
            ])
        );
    }

    /// OpenSSH itself must read what we write, option values included (they are wrapped in an
    /// inner string on the wire; a wrong encoding shows up here as a parse error or garbage).
    #[test]
    fn ssh_keygen_reads_the_certificate() {
        // No skip when ssh-keygen is missing: CI installs openssh-client, and a silent pass would
        // hide an encoding regression.
        let keygen = std::path::Path::new("ssh-keygen");
        let ca = PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32]));
        let cert = builder(&request(), subject(), [3u8; 32])
            .unwrap()
            .sign(&ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id-cert.pub");
        std::fs::write(&path, cert.to_openssh().unwrap() + "\n").unwrap();

        let out = std::process::Command::new(keygen)
            .arg("-L")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ssh-keygen -L failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
        let has = |want: &str| lines.contains(&want);
        assert!(
            has("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
            "{stdout}"
        );
        assert!(
            has("Key ID: \"sshbreak:root,ubuntu:carl@laptop:20261204T160000Z:test\""),
            "{stdout}"
        );
        assert!(has("Serial: 4242"), "{stdout}");
        assert!(has("root") && has("ubuntu"), "{stdout}");
        assert!(
            has("force-command /usr/bin/printf 'hello world'"),
            "{stdout}"
        );
        assert!(has("source-address 10.0.0.0/8,::1/128"), "{stdout}");
        assert!(has("verify-required"), "{stdout}");
        assert!(
            has("permit-pty") && !has("permit-X11-forwarding"),
            "{stdout}"
        );
        assert!(has("flag@example.com UNKNOWN FLAG OPTION"), "{stdout}");
        // "carl" as an inner string: length 4, then the bytes.
        assert!(
            has("login@example.com UNKNOWN OPTION: 000000046361726c (len 8)"),
            "{stdout}"
        );
    }

    // --- no panics, whatever the input ----------------------------------------------------

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}|[-+:0-9a-zA-Z/.,=]{0,40}") {
            let _ = parse_duration(&s);
            let _ = parse_validity(&s, NOW, B);
            let _ = parse_validity(&s, 0, 0);
            let _ = parse_validity(&s, u64::MAX, u64::MAX);
            let _ = parse_principals(&s);
            let _ = parse_option(&s);
            let _ = parse_option(&format!("source-address={s}"));
            let _ = parse_option(&format!("extension:{s}"));
            let _ = check_key_id(&s);
        }

        #[test]
        fn parsed_validity_passes_its_own_checks(s in "[-+]?[0-9]{1,6}[smhdw]?(:[-+][0-9]{1,6}[smhdw]?)?") {
            if let Ok(v) = parse_validity(&s, NOW, B) {
                prop_assert!(v.after < v.before && v.before > NOW);
                check_validity(&v, NOW, true).unwrap();
            }
        }

        #[test]
        fn default_key_id_always_passes_check(
            ps in proptest::collection::vec(any::<String>(), 0..300),
            user in any::<String>(),
            host in any::<String>(),
            now in any::<u64>(),
            reason in proptest::option::of(any::<String>()),
        ) {
            let id = default_key_id(&ps, &user, &host, now, reason.as_deref());
            prop_assert!(check_key_id(&id).is_ok(), "{:?}", id);
        }

        #[test]
        fn durations_round_trip(secs in any::<u64>()) {
            prop_assert_eq!(parse_duration(&format_duration(secs)).unwrap(), secs);
        }
    }
}
