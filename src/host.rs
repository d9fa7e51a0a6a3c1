//! Making a host's sshd trust the CA bundle without locking anyone out.
//!
//! This module is the pure half of `sshbreak enroll-host`: it reads the text of sshd's
//! configuration and the output of `sshd -T`, decides which files to change and how (the plan), and
//! writes the POSIX-sh scripts that read a remote host, apply a plan there, or do the whole job on a
//! host sshbreak never sees (`--emit`). The one stateful piece, [`apply`], is the transaction for a
//! local host; it reaches the machine only through the [`HostOps`] trait, so its rollback is tested
//! with an in-memory fake. Processes and real files live in `commands::enroll_host`.
//!
//! The rules come from how sshd reads its configuration (sshd_config(5), OpenSSH 9.2 `servconf.c`):
//! the first `TrustedUserCAKeys` wins and later ones are ignored without a word; a directive after a
//! `Match` line belongs to that block; keywords are case-insensitive and may be followed by `=`;
//! `Include` takes several globs, relative ones under /etc/ssh, and an included file's `Match`
//! blocks end with that file; a glob that matches nothing (a folder that does not exist) is no
//! error, so such an `Include` is no place for a drop-in.
//!
//! Nothing is planned on a guess: a host whose `sshd -t` or `sshd -T` fails is refused, since
//! without the effective configuration sshbreak cannot know which `TrustedUserCAKeys` is in effect.
//! The `--emit ansible` playbook carries every value taken from the bundle or the command line
//! with YAML's `!unsafe` tag, so that Ansible never evaluates template syntax in a key comment.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::Result;

/// Written on its own line before everything sshbreak adds, so `--remove` finds it again. (A comment
/// after a directive on the same line is a fatal "garbage at end of line" before OpenSSH 8.7.)
pub const MARKER: &str = "# added by sshbreak enroll-host";
/// Name of the drop-in written into an included folder, early in glob order.
pub const DROP_IN: &str = "00-sshbreak.conf";
/// Where sshd resolves relative `Include` paths (its compile-time SSHDIR).
pub const SSHDIR: &str = "/etc/ssh";
/// The system's sshd configuration: only this one is reloaded through systemctl.
pub const DEFAULT_CONFIG: &str = "/etc/ssh/sshd_config";
/// sk-ecdsa CA signatures are in sshd's default CASignatureAlgorithms from this release on.
pub const MIN_VERSION: Version = Version { major: 8, minor: 2 };
/// Suffix of the copy of each original kept while a change is in flight (removed afterwards; one
/// left behind means a run was interrupted and the next run refuses until a person looks).
pub const BACKUP_SUFFIX: &str = ".sshbreak-bak";

// ---------------------------------------------------------------------------------------------
// Versions

/// An OpenSSH release, as `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The OpenSSH release named in `sshd -V` / `ssh -V` output, e.g. `OpenSSH_9.2p1 Debian-2, …` or
/// `OpenSSH_for_Windows_8.1p1`. Older sshd binaries have no `-V` and print it in their usage text,
/// so the whole output is searched.
pub fn parse_openssh_version(text: &str) -> Option<Version> {
    let mut rest = text;
    while let Some(i) = rest.find("OpenSSH_") {
        rest = &rest[i + "OpenSSH_".len()..];
        // Skip a vendor infix such as `for_Windows_`, but stay within the token.
        let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..token_end];
        let Some(start) = token.find(|c: char| c.is_ascii_digit()) else {
            continue;
        };
        let digits = &token[start..];
        let (major, after) = split_number(digits)?;
        let Some(after) = after.strip_prefix('.') else {
            continue;
        };
        let (minor, _) = split_number(after)?;
        return Some(Version { major, minor });
    }
    None
}

fn split_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

// ---------------------------------------------------------------------------------------------
// Reading sshd_config text

/// One configuration line as sshd tokenises it: the keyword in lower case and its arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Directive {
    pub keyword: String,
    pub args: Vec<String>,
}

/// Parse one line; `None` for blank lines and comments. The keyword ends at whitespace or `=`;
/// arguments may be double-quoted; an unquoted `#` starting an argument ends the line (OpenSSH
/// 8.7+ reads it as a comment, and older releases reject it, so nothing valid is lost).
pub fn directive(line: &str) -> Option<Directive> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
                chars.next();
                continue;
            }
            if c.is_whitespace() && !quoted {
                break;
            }
            arg.push(c);
            chars.next();
        }
        args.push(arg);
    }
    Some(Directive { keyword, args })
}

/// Lines with their terminators, so that edits keep every other byte as it was.
fn lines_keep_ends(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// Index of the first `Match` line: everything from there on is conditional.
fn first_match(lines: &[&str]) -> Option<usize> {
    lines
        .iter()
        .position(|l| directive(l).is_some_and(|d| d.keyword == "match"))
}

/// The directives before the first `Match`, with their 1-based line numbers.
fn global_directives(text: &str) -> Vec<(usize, Directive)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(d) = directive(line) {
            if d.keyword == "match" {
                break;
            }
            out.push((i + 1, d));
        }
    }
    out
}

/// The value `sshd -T` prints for `key` (lower case), if it prints one.
pub fn dump_value<'a>(dump: &'a str, key: &str) -> Option<&'a str> {
    dump.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        k.eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// The `TrustedUserCAKeys` file in effect for connections no `Match` selects, or `None` when sshd
/// trusts no user CA (`sshd -T` prints `none` both when the keyword is absent and when it says so).
pub fn effective_ca_file(dump: &str) -> Option<String> {
    dump_value(dump, "trustedusercakeys")
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("none"))
        .map(str::to_string)
}

/// glob(3)-style match of one path component: `*`, `?`, `[...]` with `!`/`^` and ranges, `\`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match_class(&p, pi, n[ni]),
            Some('\\') if pi + 1 < p.len() => (p[pi + 1] == n[ni]).then_some(pi + 2),
            Some(&c) => (c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                ni += 1;
            }
            None => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Match `c` against the bracket expression at `p[start]`; the index after it on success.
fn match_class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let &lo = p.get(i)?; // an unterminated class matches nothing
        if lo == ']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&h| h != ']') {
            let hi = p[i + 2];
            found |= lo <= c && c <= hi;
            i += 3;
        } else {
            found |= lo == c;
            i += 1;
        }
    }
    (found != negate).then_some(i + 1)
}

/// The drop-in sshbreak would write: `<dir>/00-sshbreak.conf` for the first global `Include`
/// (before any `Match`) whose glob picks that name up in a folder named literally. Relative
/// patterns are under `sshdir`, as sshd resolves them; `~` patterns are left alone.
pub fn drop_in_path(config: &str, sshdir: &str) -> Option<String> {
    for (_, d) in global_directives(config) {
        if d.keyword != "include" {
            continue;
        }
        for pattern in &d.args {
            if pattern.starts_with('~') || pattern.is_empty() {
                continue;
            }
            let full = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("{}/{pattern}", sshdir.trim_end_matches('/'))
            };
            let Some((dir, base)) = full.rsplit_once('/') else {
                continue;
            };
            if dir.contains(['*', '?', '[']) || dir.is_empty() {
                continue;
            }
            if glob_match(base, DROP_IN) {
                return Some(format!("{dir}/{DROP_IN}"));
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// CA key files

/// A public key as a line of a TrustedUserCAKeys file. Identity is type and blob; the comment is
/// only carried along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaKey {
    pub algo: String,
    pub blob: String,
    pub comment: String,
}

impl CaKey {
    /// Read a key line leniently: any non-comment line with at least two fields. sshd would skip a
    /// malformed line too; here it is kept as it is and simply never matches a bundle key.
    pub fn parse_line(line: &str) -> Option<CaKey> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let algo = fields.next()?.to_string();
        let blob = fields.next()?.to_string();
        let comment = fields.collect::<Vec<_>>().join(" ");
        Some(CaKey {
            algo,
            blob,
            comment,
        })
    }

    pub fn from_public(key: &ssh_key::PublicKey) -> Result<CaKey> {
        let line = key.to_openssh()?;
        CaKey::parse_line(&line)
            .ok_or_else(|| anyhow::anyhow!("internal: cannot read back an OpenSSH public key line"))
    }

    fn same(&self, other: &CaKey) -> bool {
        self.algo == other.algo && self.blob == other.blob
    }

    /// The line sshbreak writes. The scripts pass key lines to awk joined by `|` (and awk reads
    /// backslash escapes), so those characters, like control characters, become `_` in comments.
    /// So do the characters a YAML 1.1 parser (cloud-init's, Ansible's) reads as a line break or
    /// refuses (U+2028, U+2029, U+FEFF, U+FFFE, U+FFFF): in the cloud-init output the key lines
    /// sit in a literal block, where a line break would end the block and let the rest of the
    /// comment be read as YAML.
    pub fn line(&self) -> String {
        let comment: String = self
            .comment
            .chars()
            .map(|c| {
                if c.is_control()
                    || matches!(
                        c,
                        '|' | '\\' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                    )
                {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        if comment.is_empty() {
            format!("{} {}", self.algo, self.blob)
        } else {
            format!("{} {} {comment}", self.algo, self.blob)
        }
    }

    /// `type blob`, the identity the shell scripts compare.
    pub fn id(&self) -> String {
        format!("{} {}", self.algo, self.blob)
    }
}

/// The bundle's keys without duplicates (the same key under two comments counts once).
pub fn dedup_keys(keys: &[CaKey]) -> Vec<CaKey> {
    let mut out: Vec<CaKey> = Vec::new();
    for k in keys {
        if !out.iter().any(|o| o.same(k)) {
            out.push(k.clone());
        }
    }
    out
}

fn keys_in(text: &str) -> Vec<CaKey> {
    text.lines().filter_map(CaKey::parse_line).collect()
}

/// How many of `keys` the file text holds.
pub fn keys_held(text: &str, keys: &[CaKey]) -> usize {
    let have = keys_in(text);
    keys.iter()
        .filter(|k| have.iter().any(|h| h.same(k)))
        .count()
}

/// Append the keys the file lacks, after a marker line. Returns the new text and how many were added.
fn merge_keys(current: Option<&str>, keys: &[CaKey]) -> (String, usize) {
    let text = current.unwrap_or("");
    let have = keys_in(text);
    let missing: Vec<&CaKey> = keys
        .iter()
        .filter(|k| !have.iter().any(|h| h.same(k)))
        .collect();
    if missing.is_empty() {
        return (text.to_string(), 0);
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(MARKER);
    out.push('\n');
    for k in &missing {
        out.push_str(&k.line());
        out.push('\n');
    }
    (out, missing.len())
}

/// Drop the bundle's keys and sshbreak's marker lines from a key file.
fn remove_keys(text: &str, keys: &[CaKey]) -> (String, usize) {
    let mut removed = 0;
    let mut out = String::new();
    for line in lines_keep_ends(text) {
        if line.trim_end() == MARKER {
            continue;
        }
        if CaKey::parse_line(line).is_some_and(|k| keys.iter().any(|b| b.same(&k))) {
            removed += 1;
            continue;
        }
        out.push_str(line);
    }
    (out, removed)
}

// ---------------------------------------------------------------------------------------------
// Editing sshd_config text

/// The two lines sshbreak adds to make `ca_file` the trusted CA file.
pub fn directive_block(ca_file: &str) -> String {
    format!("{MARKER}\nTrustedUserCAKeys {ca_file}\n")
}

/// Insert `block` where it is global: before the first `Match`, or at the end when there is none.
fn insert_global(text: &str, block: &str) -> String {
    let lines = lines_keep_ends(text);
    match first_match(&lines) {
        Some(i) => {
            let mut out: String = lines[..i].concat();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            out.push_str(&lines[i..].concat());
            out
        }
        None => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            out
        }
    }
}

/// Remove sshbreak's marker lines and the `TrustedUserCAKeys` line each one introduces, except
/// those naming a file in `keep`. Returns the new text and the files the removed lines named.
fn strip_directives(text: &str, keep: &BTreeSet<String>) -> (String, Vec<String>) {
    let lines = lines_keep_ends(text);
    let mut out = String::new();
    let mut removed = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == MARKER {
            let next = lines.get(i + 1).and_then(|l| directive(l));
            match next {
                Some(d) if d.keyword == "trustedusercakeys" => {
                    let value = d.args.first().cloned().unwrap_or_default();
                    if keep.contains(&value) {
                        out.push_str(lines[i]);
                        out.push_str(lines[i + 1]);
                    } else {
                        removed.push(value);
                    }
                    i += 2;
                }
                // A marker on its own (its directive edited away by hand) goes too.
                _ => i += 1,
            }
            continue;
        }
        out.push_str(lines[i]);
        i += 1;
    }
    (out, removed)
}

// ---------------------------------------------------------------------------------------------
// Planning

/// What `enroll-host` was asked to do on one host.
#[derive(Clone, Debug)]
pub struct Request {
    /// The bundle's keys, deduplicated.
    pub keys: Vec<CaKey>,
    /// sshd's main configuration file on the host.
    pub config: String,
    /// Where to install the bundle when no TrustedUserCAKeys is in effect yet.
    pub ca_dest: String,
    /// Take sshbreak's keys and directive out instead.
    pub remove: bool,
}

/// A file as read from the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileState {
    Absent,
    Text(String),
    /// Present but unusable: not a regular file, unreadable, or not UTF-8 text.
    Unusable(String),
}

/// Everything the planner looks at, read from the host.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `sshd -V` (or `ssh -V`) output.
    pub version_text: String,
    /// `sshd -t -f CONFIG`: `Err` holds its message.
    pub check: Option<Result<(), String>>,
    /// `sshd -T -f CONFIG` output (empty when it failed).
    pub dump: String,
    /// `sshd -T -f CONFIG` failed with this message: nothing may be planned on `dump` then.
    pub dump_error: Option<String>,
    /// Files read, by path; the main configuration is always among them.
    pub files: BTreeMap<String, FileState>,
    /// Folders looked at, by path: whether a directory (or a link to one) is there.
    pub dirs: BTreeMap<String, bool>,
    /// The user the reads ran as, when known (for a hint when it is not root).
    pub uid: Option<u32>,
}

/// One file change: `before` is what the file must still hold when the change is applied (`None`:
/// must not exist), `after` what it will hold (`None`: deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The result of planning: changes in the order to apply them (the CA file before the directive
/// that names it, so sshd never points at a missing file), and what to say about them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub actions: Vec<String>,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The paths the planner needs to have read (besides the main configuration).
pub fn files_needed(config_text: &str, dump: &str, req: &Request) -> Vec<String> {
    let mut paths = vec![req.ca_dest.clone()];
    paths.extend(effective_ca_file(dump));
    paths.extend(drop_in_path(config_text, SSHDIR));
    paths.retain(|p| p != &req.config);
    paths.sort();
    paths.dedup();
    paths
}

/// The folders whose existence the planner needs to know: the one a drop-in would go to. (An
/// `Include` of a folder that does not exist is valid, but nothing can be written there.)
pub fn dirs_needed(config_text: &str) -> Vec<String> {
    drop_in_path(config_text, SSHDIR)
        .and_then(|p| p.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .into_iter()
        .collect()
}

/// What the planner still needs from the host, given what `snap` already holds: files to read and
/// folders to look at. The remote mode probes again for these; empty lists mean ready to plan.
pub fn still_needed(snap: &Snapshot, req: &Request) -> (Vec<String>, Vec<String>) {
    let config_text = match snap.files.get(&req.config) {
        Some(FileState::Text(t)) => t.as_str(),
        _ => "",
    };
    let files = files_needed(config_text, &snap.dump, req)
        .into_iter()
        .filter(|p| !snap.files.contains_key(p))
        .collect();
    let dirs = dirs_needed(config_text)
        .into_iter()
        .filter(|d| !snap.dirs.contains_key(d))
        .collect();
    (files, dirs)
}

/// Read everything the planner looks at through `ops` (the local host): `sshd -t`, `sshd -T`, the
/// main configuration, then the files and folders it leads to. `version_text` is `sshd -V` output.
pub fn read_snapshot(
    ops: &mut dyn HostOps,
    version_text: String,
    req: &Request,
) -> Result<Snapshot> {
    let mut snap = Snapshot {
        version_text,
        check: Some(ops.check()),
        ..Snapshot::default()
    };
    match ops.dump() {
        Ok(dump) => snap.dump = dump,
        Err(e) => snap.dump_error = Some(e),
    }
    let config = ops.read(&req.config)?;
    snap.files.insert(req.config.clone(), config);
    let (files, dirs) = still_needed(&snap, req);
    for p in files {
        let state = ops.read(&p)?;
        snap.files.insert(p, state);
    }
    for d in dirs {
        let there = ops.is_dir(&d)?;
        snap.dirs.insert(d, there);
    }
    Ok(snap)
}

/// Check the request's own values: what sshbreak writes into sshd_config must stay one token.
pub fn check_request(req: &Request) -> std::result::Result<(), String> {
    for (what, path) in [("--sshd-config", &req.config), ("--ca-dest", &req.ca_dest)] {
        if !path.starts_with('/') || path.ends_with('/') {
            return Err(format!(
                "{what} `{path}` must be an absolute file path (it is read on the host)"
            ));
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'#\\".contains(c))
        {
            return Err(format!(
                "{what} `{path}` contains a space, quote, `#` or backslash; pick a plainer path"
            ));
        }
    }
    if req.config == req.ca_dest {
        return Err("--ca-dest must not be the sshd configuration file itself".into());
    }
    if req.keys.is_empty() {
        return Err("the trust bundle holds no CA key; run `sshbreak init-ca` first".into());
    }
    Ok(())
}

/// Preflight: a release that accepts sk-ecdsa CA signatures, and a configuration sshd accepts as
/// it is (a change on top of a broken file could not be told apart from a broken change).
pub fn preflight(snap: &Snapshot, req: &Request) -> std::result::Result<Version, String> {
    let version = parse_openssh_version(&snap.version_text).ok_or_else(|| {
        format!(
            "cannot tell the OpenSSH version from `sshd -V` ({}); is openssh-server installed?",
            first_line(&snap.version_text)
        )
    })?;
    if version < MIN_VERSION {
        return Err(format!(
            "OpenSSH {version} is older than {MIN_VERSION}, which cannot verify the security key's \
             CA signatures; upgrade openssh-server first"
        ));
    }
    match &snap.check {
        Some(Ok(())) => {}
        Some(Err(msg)) => {
            return Err(format!(
                "`sshd -t -f {}` rejects the current configuration ({}); fix it first — nothing was changed",
                req.config,
                first_line(msg)
            ));
        }
        None => return Err("internal: sshd -t was not run".into()),
    }
    dump_usable(snap, req)?;
    Ok(version)
}

/// Refuse to plan without `sshd -T`: its output is the only reliable source of the
/// `TrustedUserCAKeys` in effect, and planning on an empty one would add a second, ignored line.
fn dump_usable(snap: &Snapshot, req: &Request) -> std::result::Result<(), String> {
    match &snap.dump_error {
        None => Ok(()),
        Some(msg) => Err(format!(
            "`sshd -T -f {}` fails ({}), so the TrustedUserCAKeys in effect cannot be known; run it \
             as root on the host to see why and fix that first — nothing was changed",
            req.config,
            first_line(msg)
        )),
    }
}

/// The first non-empty line of a message, trimmed; `no output` when there is none.
pub fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_string()
}

fn text_of<'a>(snap: &'a Snapshot, path: &str) -> std::result::Result<Option<&'a str>, String> {
    match snap.files.get(path) {
        Some(FileState::Absent) => Ok(None),
        Some(FileState::Text(t)) => Ok(Some(t)),
        Some(FileState::Unusable(why)) => Err(format!(
            "{path}: {why}; sshbreak edits only regular UTF-8 text files"
        )),
        None => Err(format!("internal: {path} was not read before planning")),
    }
}

/// Decide what to change. Pure: the same snapshot and request always give the same plan. An `Err`
/// is a refusal, one line saying why and what to do.
pub fn plan(snap: &Snapshot, req: &Request) -> std::result::Result<Plan, String> {
    check_request(req)?;
    dump_usable(snap, req)?;
    let config = text_of(snap, &req.config)?
        .ok_or_else(|| format!("{} does not exist; pass --sshd-config", req.config))?;
    if req.remove {
        plan_remove(snap, req, config)
    } else {
        plan_enroll(snap, req, config)
    }
}

/// Lines (1-based) of `TrustedUserCAKeys` inside Match blocks: they override the global value for
/// the connections they match, which sshbreak leaves alone but mentions.
fn conditional_ca_lines(config: &str) -> Vec<usize> {
    let lines = lines_keep_ends(config);
    let Some(start) = first_match(&lines) else {
        return Vec::new();
    };
    (start..lines.len())
        .filter(|&i| directive(lines[i]).is_some_and(|d| d.keyword == "trustedusercakeys"))
        .map(|i| i + 1)
        .collect()
}

fn plan_enroll(snap: &Snapshot, req: &Request, config: &str) -> std::result::Result<Plan, String> {
    let mut plan = Plan::default();
    for no in conditional_ca_lines(config) {
        plan.notes.push(format!(
            "{} line {no}: a TrustedUserCAKeys inside a Match block replaces the global one for the \
             connections it matches; those logins will not accept sshbreak certificates",
            req.config
        ));
    }
    let n = req.keys.len();
    if let Some(path) = effective_ca_file(&snap.dump) {
        // Only the first TrustedUserCAKeys counts: the keys must go into the file already in effect.
        let current = text_of(snap, &path)?;
        let (after, added) = merge_keys(current, &req.keys);
        if added > 0 {
            plan.actions.push(format!(
                "add {added} CA key(s) to {path}, the TrustedUserCAKeys file already in effect"
            ));
            plan.changes.push(Change {
                path,
                before: current.map(str::to_string),
                after: Some(after),
            });
        }
        return Ok(plan);
    }

    // Nothing in effect. An explicit `TrustedUserCAKeys none` is somebody's decision, and a line
    // of ours after it would be ignored anyway.
    if let Some((no, _)) = global_directives(config)
        .into_iter()
        .find(|(_, d)| d.keyword == "trustedusercakeys")
    {
        return Err(format!(
            "{} line {no} sets `TrustedUserCAKeys none`, turning user certificates off on purpose; \
             remove that line if break-glass access is wanted, then run again",
            req.config
        ));
    }

    let dest = req.ca_dest.as_str();
    let current = text_of(snap, dest)?;
    if let Some(text) = current {
        let foreign = keys_in(text)
            .iter()
            .filter(|k| !req.keys.iter().any(|b| b.same(k)))
            .count();
        if foreign > 0 {
            return Err(format!(
                "{dest} already exists and holds {foreign} key(s) that are not in your bundle, which \
                 sshd would start trusting; remove it or pass another --ca-dest"
            ));
        }
    }
    let (after, added) = merge_keys(current, &req.keys);
    if added > 0 {
        plan.actions.push(format!("write {n} CA key(s) to {dest}"));
        plan.changes.push(Change {
            path: dest.to_string(),
            before: current.map(str::to_string),
            after: Some(after),
        });
    }

    let block = directive_block(dest);
    let drop_in = drop_in_path(config, SSHDIR).filter(|p| p != &req.config && p != dest);
    // A folder that does not exist: sshd is happy (the glob matches nothing), but no drop-in can
    // be written there, and creating folders on someone's host is not sshbreak's call.
    let mut missing_folder = None;
    let drop_in = match drop_in {
        Some(p) => {
            let dir = p.rsplit_once('/').map_or("", |(d, _)| d).to_string();
            match snap.dirs.get(&dir) {
                Some(true) => Some(p),
                Some(false) => {
                    missing_folder = Some(dir);
                    None
                }
                None => return Err(format!("internal: {dir} was not looked at before planning")),
            }
        }
        None => None,
    };
    match drop_in {
        Some(drop_in) => {
            let current = text_of(snap, &drop_in)?;
            let after = match current {
                None => block,
                Some(t) => insert_global(t, &block),
            };
            plan.actions.push(format!(
                "add `TrustedUserCAKeys {dest}` in {drop_in} (included before any Match)"
            ));
            plan.changes.push(Change {
                path: drop_in,
                before: current.map(str::to_string),
                after: Some(after),
            });
        }
        None => {
            let where_ = if first_match(&lines_keep_ends(config)).is_some() {
                "before its first Match"
            } else {
                "at its end"
            };
            let why = missing_folder.map_or(String::new(), |d| {
                format!(" (the folder its Include names, {d}, does not exist)")
            });
            plan.actions.push(format!(
                "add `TrustedUserCAKeys {dest}` to {} {where_}{why}",
                req.config
            ));
            plan.changes.push(Change {
                path: req.config.clone(),
                before: Some(config.to_string()),
                after: Some(insert_global(config, &block)),
            });
        }
    }
    Ok(plan)
}

fn plan_remove(snap: &Snapshot, req: &Request, config: &str) -> std::result::Result<Plan, String> {
    let mut plan = Plan::default();
    let effective = effective_ca_file(&snap.dump);

    // Keys in the effective file that are not sshbreak's keep that file's directive alive: taking
    // it out would silently stop trusting someone else's CA.
    let mut keep = BTreeSet::new();
    let mut ca_change = None;
    if let Some(path) = &effective
        && let Some(text) = text_of(snap, path)?
    {
        let (after, removed) = remove_keys(text, &req.keys);
        let others = keys_in(&after).len();
        if others > 0 {
            keep.insert(path.clone());
        }
        if removed > 0 || after != text {
            ca_change = Some((path.clone(), text.to_string(), after, removed, others));
        }
    }

    let mut removed_directives = Vec::new();
    let mut config_files = vec![req.config.clone()];
    config_files.extend(drop_in_path(config, SSHDIR).filter(|p| p != &req.config));
    for path in config_files {
        let Some(text) = text_of(snap, &path)? else {
            continue;
        };
        let (after, removed) = strip_directives(text, &keep);
        if after == text {
            continue;
        }
        let delete = path != req.config && after.trim().is_empty();
        plan.actions.push(if delete {
            format!("delete {path} (only sshbreak's directive was in it)")
        } else {
            format!("remove sshbreak's TrustedUserCAKeys line from {path}")
        });
        plan.changes.push(Change {
            path,
            before: Some(text.to_string()),
            after: (!delete).then_some(after),
        });
        removed_directives.extend(removed);
    }
    for path in &keep {
        plan.notes.push(format!(
            "kept the TrustedUserCAKeys line for {path}: it still holds CA keys that are not sshbreak's"
        ));
    }

    if let Some((path, before, after, removed, others)) = ca_change {
        let ours = removed_directives.contains(&path);
        let delete = others == 0 && ours && path == req.ca_dest;
        plan.actions.push(if delete {
            format!("delete {path} (it held only sshbreak's CA keys)")
        } else {
            format!("remove {removed} sshbreak CA key(s) from {path}")
        });
        plan.changes.push(Change {
            path,
            before: Some(before),
            after: (!delete).then_some(after),
        });
    }
    Ok(plan)
}

/// After the change: does sshd, as `sshd -T` now reports it, trust what it should? `ca_text` is the
/// text of the file that dump names (None: absent or none named).
pub fn confirm(
    dump: &str,
    ca_text: Option<&str>,
    keys: &[CaKey],
    remove: bool,
) -> std::result::Result<(), String> {
    let file = effective_ca_file(dump);
    if remove {
        if let (Some(path), Some(text)) = (&file, ca_text) {
            let held = keys_held(text, keys);
            if held > 0 {
                return Err(format!(
                    "after the change {path}, the TrustedUserCAKeys file in effect, still holds {held} \
                     sshbreak CA key(s)"
                ));
            }
        }
        return Ok(());
    }
    let Some(path) = file else {
        return Err("after the change `sshd -T` shows no TrustedUserCAKeys in effect".to_string());
    };
    let Some(text) = ca_text else {
        return Err(format!(
            "after the change sshd trusts {path}, which cannot be read"
        ));
    };
    let held = keys_held(text, keys);
    if held != keys.len() {
        return Err(format!(
            "after the change {path}, the TrustedUserCAKeys file in effect, holds {held} of the {} \
             bundle key(s)",
            keys.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Showing a plan

/// A unified diff of one change (3 lines of context), in the style of `diff -u`.
pub fn unified_diff(change: &Change) -> String {
    let before = change.before.as_deref().unwrap_or("");
    let after = change.after.as_deref().unwrap_or("");
    let old_name = if change.before.is_some() {
        change.path.as_str()
    } else {
        "/dev/null"
    };
    let new_name = if change.after.is_some() {
        change.path.as_str()
    } else {
        "/dev/null"
    };
    let a = lines_keep_ends(before);
    let b = lines_keep_ends(after);
    let ops = diff_ops(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    const CONTEXT: usize = 3;
    // Group the edit script into hunks separated by more than 2*CONTEXT unchanged lines.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k + 1 < changed.len() && changed[k + 1] - end <= 2 * CONTEXT {
            k += 1;
            end = changed[k];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        k += 1;
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_len, mut b_len) = (0, 0);
        let mut body = String::new();
        for op in &ops[start..end] {
            let (prefix, line, ai, bi) = match *op {
                Op::Same(ai, bi) => (' ', a[ai], Some(ai), Some(bi)),
                Op::Del(ai) => ('-', a[ai], Some(ai), None),
                Op::Add(bi) => ('+', b[bi], None, Some(bi)),
            };
            if let Some(ai) = ai {
                a_start.get_or_insert(ai);
                a_len += 1;
            }
            if let Some(bi) = bi {
                b_start.get_or_insert(bi);
                b_len += 1;
            }
            body.push(prefix);
            body.push_str(line.strip_suffix('\n').unwrap_or(line));
            body.push('\n');
            if !line.ends_with('\n') {
                body.push_str("\\ No newline at end of file\n");
            }
        }
        // An empty side is numbered by the line before it, as diff -u does.
        let a_pos = a_start.map_or_else(|| prefix_count(&ops[..start], true), |s| s + 1);
        let b_pos = b_start.map_or_else(|| prefix_count(&ops[..start], false), |s| s + 1);
        let _ = writeln!(out, "@@ -{a_pos},{a_len} +{b_pos},{b_len} @@");
        out.push_str(&body);
    }
    out
}

fn prefix_count(ops: &[Op], old: bool) -> usize {
    ops.iter()
        .filter(|op| match op {
            Op::Same(..) => true,
            Op::Del(_) => old,
            Op::Add(_) => !old,
        })
        .count()
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Line edit script by longest common subsequence. Config files are small; past a size where the
/// table would be large, the whole file is shown as replaced, which is still a correct diff.
fn diff_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > 4_000_000 {
        return (0..n).map(Op::Del).chain((0..m).map(Op::Add)).collect();
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions first, as diff -u shows a replaced line.
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// The local transaction

/// The effects [`apply`] needs from a host. Paths are absolute; `write` is atomic and keeps an
/// existing file's mode and owner (a new file is 0644).
pub trait HostOps {
    fn read(&mut self, path: &str) -> Result<FileState>;
    /// Whether anything (also a dangling symlink) is at `path`.
    fn exists(&mut self, path: &str) -> Result<bool>;
    /// Whether `path` is a directory (following symlinks, as sshd's glob does).
    fn is_dir(&mut self, path: &str) -> Result<bool>;
    fn write(&mut self, path: &str, text: &str) -> Result<()>;
    /// Copy with the same mode and owner.
    fn copy(&mut self, from: &str, to: &str) -> Result<()>;
    fn rename(&mut self, from: &str, to: &str) -> Result<()>;
    fn remove(&mut self, path: &str) -> Result<()>;
    /// `sshd -t -f CONFIG`; `Err` holds sshd's message.
    fn check(&mut self) -> std::result::Result<(), String>;
    /// `sshd -T -f CONFIG`.
    fn dump(&mut self) -> std::result::Result<String, String>;
}

/// Where the copy of `path` is kept during a change: hidden, so that an `Include dir/*` glob
/// never reads it as configuration.
pub fn backup_path(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{dir}/.{name}{BACKUP_SUFFIX}")
}

/// Apply a plan as one transaction: check that every file still holds what was planned on, keep a
/// copy of each original, write, then require `sshd -t` to pass and `sshd -T` to show the result
/// ([`confirm`]). On any failure every original comes back byte for byte and created files go.
/// Returns the `sshd -T` output after the change (for the reload).
pub fn apply(
    ops: &mut dyn HostOps,
    plan: &Plan,
    req: &Request,
    fail_after_write: bool,
) -> std::result::Result<String, String> {
    let err = |e: anyhow::Error| format!("{e:#}");
    for c in &plan.changes {
        let expected = match &c.before {
            None => FileState::Absent,
            Some(t) => FileState::Text(t.clone()),
        };
        if ops.read(&c.path).map_err(err)? != expected {
            return Err(format!(
                "{} changed while sshbreak was planning; run enroll-host again — nothing was changed",
                c.path
            ));
        }
        let bak = backup_path(&c.path);
        if ops.exists(&bak).map_err(err)? {
            return Err(format!(
                "{bak} exists: an earlier run was interrupted; compare it with {}, keep the right \
                 one, delete {bak} and run again",
                c.path
            ));
        }
    }
    let mut backups: Vec<String> = Vec::new();
    for c in plan.changes.iter().filter(|c| c.before.is_some()) {
        let bak = backup_path(&c.path);
        if let Err(e) = ops.copy(&c.path, &bak) {
            for b in &backups {
                let _ = ops.remove(b);
            }
            return Err(format!(
                "cannot keep a copy of {} ({e:#}) — nothing was changed",
                c.path
            ));
        }
        backups.push(bak);
    }

    let mut touched: Vec<&Change> = Vec::new();
    let outcome = (|| -> std::result::Result<String, String> {
        for c in &plan.changes {
            touched.push(c);
            match &c.after {
                Some(text) => ops.write(&c.path, text),
                None => ops.remove(&c.path),
            }
            .map_err(err)?;
        }
        ops.check().map_err(|e| {
            format!(
                "sshd -t rejects the changed configuration ({})",
                first_line(&e)
            )
        })?;
        let dump = ops
            .dump()
            .map_err(|e| format!("sshd -T fails after the change ({})", first_line(&e)))?;
        let ca_text = match effective_ca_file(&dump) {
            Some(p) => match ops.read(&p).map_err(err)? {
                FileState::Text(t) => Some(t),
                _ => None,
            },
            None => None,
        };
        confirm(&dump, ca_text.as_deref(), &req.keys, req.remove)?;
        if fail_after_write {
            return Err("failing after the write as SSHBREAK_TEST_FAIL_AFTER_WRITE asks".into());
        }
        Ok(dump)
    })();

    match outcome {
        Ok(dump) => {
            for b in &backups {
                let _ = ops.remove(b);
            }
            Ok(dump)
        }
        Err(why) => {
            let mut failed = Vec::new();
            for c in touched.iter().rev() {
                let restored = match &c.before {
                    // The copy has the original's bytes, mode and owner; the text in memory is
                    // the fallback when the rename cannot be done.
                    Some(text) => ops
                        .rename(&backup_path(&c.path), &c.path)
                        .or_else(|_| ops.write(&c.path, text)),
                    None => ops.remove(&c.path),
                };
                if restored.is_err() {
                    failed.push(c.path.clone());
                }
            }
            if failed.is_empty() {
                for b in &backups {
                    if ops.exists(b).unwrap_or(false) {
                        let _ = ops.remove(b);
                    }
                }
                Err(format!("{why}; restored the original files"))
            } else {
                Err(format!(
                    "{why}; restoring {} failed — the originals are in the {BACKUP_SUFFIX} copies \
                     next to them",
                    failed.join(", ")
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shell scripts (remote hosts and --emit)

/// Quote for POSIX sh: single quotes, each `'` written as `'\''`. Nothing else is special inside.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Common start of every script: a known directory, sshd findable, files born 0644.
fn script_preamble(config: &str) -> String {
    format!(
        "set -u\n\
         cd / || exit 1\n\
         PATH=/usr/sbin:/sbin:/usr/bin:/bin:$PATH; export PATH\n\
         umask 022\n\
         SSHD=$(command -v sshd 2>/dev/null) || SSHD=/usr/sbin/sshd\n\
         C={}\n",
        sh_quote(config)
    )
}

/// The probe: prints, one record a line, what the planner needs: the files in `paths`, whether
/// each of `dirs` is a folder, and sshd's own view. Each record is
/// `@@sshbreak NAME STATUS xHEX xHEX` (hex of a path or a value, and of a content), so any bytes
/// survive the trip; `od` and `tr` are POSIX.
pub fn probe_script(config: &str, paths: &[String], dirs: &[String]) -> String {
    let mut s = script_preamble(config);
    s.push_str(PROBE_LIB);
    for p in paths {
        let _ = writeln!(s, "file_rec {}", sh_quote(p));
    }
    for d in dirs {
        let _ = writeln!(s, "dir_rec {}", sh_quote(d));
    }
    s.push_str("probe_end\n");
    s
}

const PROBE_LIB: &str = r#"hex() { od -An -v -tx1 | tr -d ' \n'; }
rec() { printf '@@sshbreak %s %s x%s x%s\n' "$1" "$2" "$(printf '%s' "$3" | hex)" "$4"; }
file_rec() {
  if [ -h "$1" ]; then rec file notfile "$1" ''
  elif [ ! -e "$1" ]; then rec file absent "$1" ''
  elif [ ! -f "$1" ]; then rec file notfile "$1" ''
  elif [ ! -r "$1" ]; then rec file unreadable "$1" ''
  else rec file present "$1" "$(hex < "$1")"
  fi
}
dir_rec() { if [ -d "$1" ]; then rec dir present "$1" ''; else rec dir absent "$1" ''; fi; }
rec uid "$(id -u)" '' ''
v=$("$SSHD" -V 2>&1); rec sshd-version "$?" '' "$(printf '%s' "$v" | hex)"
v=$(ssh -V 2>&1); rec ssh-version "$?" '' "$(printf '%s' "$v" | hex)"
v=$("$SSHD" -t -f "$C" 2>&1); rec check "$?" '' "$(printf '%s' "$v" | hex)"
# The dump without stderr (warnings would mix into it); when it fails, its messages instead.
if dump=$("$SSHD" -T -f "$C" 2>/dev/null); then rec dump 0 '' "$(printf '%s' "$dump" | hex)"
else st=$?; v=$("$SSHD" -T -f "$C" 2>&1); rec dump "$st" '' "$(printf '%s' "$v" | hex)"; dump=''; fi
file_rec "$C"
eff=$(printf '%s\n' "$dump" | awk 'tolower($1) == "trustedusercakeys" { sub(/^[^ \t]+[ \t]+/, ""); print; exit }')
case $eff in ''|none) ;; *) file_rec "$eff" ;; esac
probe_end() { printf '@@sshbreak end 0 x x\n'; }
"#;

/// The probe writes file contents as `x` + hex (an empty file is a bare `x`).
fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.strip_prefix('x')?).ok()
}

/// Read the probe's records into a snapshot. `Err` when the output is cut short or garbled (a
/// login banner or shell noise on stdout is skipped).
pub fn parse_probe(output: &str) -> std::result::Result<Snapshot, String> {
    let mut snap = Snapshot::default();
    let (mut sshd_v, mut ssh_v) = (String::new(), String::new());
    let mut ended = false;
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("@@sshbreak ") else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        let [name, status, a, b] = f[..] else {
            return Err(format!("garbled probe line `{}`", first_line(line)));
        };
        let (Some(a), Some(b)) = (unhex(a), unhex(b)) else {
            return Err(format!("garbled probe line for {name}"));
        };
        let a = String::from_utf8_lossy(&a).into_owned();
        let text = || String::from_utf8_lossy(&b).into_owned();
        match name {
            "uid" => snap.uid = status.parse().ok(),
            "sshd-version" => sshd_v = text(),
            "ssh-version" => ssh_v = text(),
            "check" => {
                snap.check = Some(if status == "0" { Ok(()) } else { Err(text()) });
            }
            "dump" if status == "0" => snap.dump = text(),
            "dump" => snap.dump_error = Some(text()),
            "dir" => {
                snap.dirs.insert(a, status == "present");
            }
            "file" => {
                let state = match status {
                    "absent" => FileState::Absent,
                    "present" => match String::from_utf8(b) {
                        Ok(t) if !t.contains('\0') => FileState::Text(t),
                        _ => FileState::Unusable("not UTF-8 text".into()),
                    },
                    "unreadable" => FileState::Unusable("cannot be read".into()),
                    _ => FileState::Unusable("not a regular file".into()),
                };
                snap.files.insert(a, state);
            }
            "end" => ended = true,
            _ => {}
        }
    }
    if !ended {
        return Err("the probe stopped before its end (see ssh's message above)".into());
    }
    snap.version_text = if parse_openssh_version(&sshd_v).is_some() {
        sshd_v
    } else {
        ssh_v
    };
    Ok(snap)
}

/// Helpers shared by the apply script and `--emit shell`: the transaction (backups next to each
/// file, hidden; atomic replace keeping mode and owner; rollback), the confirmation through
/// `sshd -T`, and the reload. They use $SSHD, $C, $KEYS (key lines joined by `|`), $NKEYS, $MODE.
const TX_LIB: &str = r#"TX_FILES=''
TX_ERR=''
MARK='# added by sshbreak enroll-host'
bak() { printf '%s/.%s.sshbreak-bak' "${1%/*}" "${1##*/}"; }
tmpf() { printf '%s/.%s.sshbreak-new' "${1%/*}" "${1##*/}"; }
firstline() { printf '%s\n' "$1" | awk 'NF { sub(/^[ \t]+/, ""); print; found = 1; exit } END { if (!found) print "no output" }'; }
file_text() { t=$(cat -- "$1"; printf x) || return 1; printf '%s' "${t%x}"; }
# Remember a file before changing it: a copy with its mode and owner, removed on success.
tx_track() {
  b=$(bak "$1")
  if [ -e "$b" ] || [ -h "$b" ]; then
    TX_ERR="$b exists: an earlier run was interrupted; compare it with $1, keep the right one, delete $b and run again"; return 1
  fi
  if [ -h "$1" ]; then TX_ERR="$1 is a symbolic link; sshbreak edits only regular files, name the real file"; return 1; fi
  if [ -e "$1" ]; then cp -p "$1" "$b" || { TX_ERR="cannot copy $1 to $b"; return 1; }; fi
  TX_FILES="$1
$TX_FILES"
}
# Replace $1 with the text $2: a sibling temp file (cp -p keeps mode and owner), then rename.
tx_write() {
  t=$(tmpf "$1")
  rm -f "$t" || return 1
  if [ -e "$1" ]; then cp -p "$1" "$t" || return 1; else : > "$t" && chmod 644 "$t" || return 1; fi
  if printf '%s' "$2" > "$t" && mv -f "$t" "$1"; then return 0; fi
  rm -f "$t"; return 1
}
tx_each() {
  old_ifs=$IFS; IFS='
'; set -f
  for f in $TX_FILES; do "$1" "$f"; done
  IFS=$old_ifs; set +f
}
tx_restore_one() { b=$(bak "$1"); if [ -e "$b" ]; then mv -f "$b" "$1" || TX_RESTORE_FAILED="$TX_RESTORE_FAILED $1"; else rm -f "$1" || TX_RESTORE_FAILED="$TX_RESTORE_FAILED $1"; fi; }
tx_rollback() { TX_RESTORE_FAILED=''; tx_each tx_restore_one; [ -z "$TX_RESTORE_FAILED" ]; }
tx_drop_one() { rm -f "$(bak "$1")"; }
tx_commit() { tx_each tx_drop_one; }
# How many of $KEYS file $1 holds (type and blob compared; comments ignored).
keys_held() {
  [ -f "$1" ] || { echo 0; return; }
  awk -v want="$KEYS" 'BEGIN { n = split(want, w, "|") }
    $0 !~ /^[ \t]*#/ && NF >= 2 { have[$1 " " $2] = 1 }
    END { c = 0; for (i = 1; i <= n; i++) { split(w[i], f, " "); if ((f[1] " " f[2]) in have) c++ }; print c }' "$1"
}
effective_ca() { printf '%s\n' "$1" | awk 'tolower($1) == "trustedusercakeys" { sub(/^[^ \t]+[ \t]+/, ""); print; exit }'; }
# After writing: sshd must accept the config and `sshd -T` must show the keys trusted (or gone).
tx_verify() {
  out=$("$SSHD" -t -f "$C" 2>&1) || { TX_ERR="sshd -t rejects the changed configuration ($(firstline "$out"))"; return 1; }
  DUMP=$("$SSHD" -T -f "$C" 2>&1) || { TX_ERR="sshd -T fails after the change ($(firstline "$DUMP"))"; return 1; }
  f=$(effective_ca "$DUMP")
  if [ "$MODE" = remove ]; then
    case $f in ''|none) return 0 ;; esac
    held=$(keys_held "$f")
    [ "$held" = 0 ] || { TX_ERR="after the change $f, the TrustedUserCAKeys file in effect, still holds $held sshbreak CA key(s)"; return 1; }
    return 0
  fi
  case $f in ''|none) TX_ERR="after the change sshd -T shows no TrustedUserCAKeys in effect"; return 1 ;; esac
  held=$(keys_held "$f")
  [ "$held" = "$NKEYS" ] || { TX_ERR="after the change $f, the TrustedUserCAKeys file in effect, holds $held of the $NKEYS bundle key(s)"; return 1; }
}
# Reload without dropping sessions: systemd for the system config, else SIGHUP to the PidFile's sshd.
reload_sshd() {
  if [ "$C" = /etc/ssh/sshd_config ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for u in ssh sshd; do
      if systemctl is-active --quiet "$u" 2>/dev/null; then
        if out=$(systemctl reload "$u" 2>&1); then RELOAD_MSG="reloaded sshd (systemctl reload $u)"; return 0; fi
        RELOAD_MSG="systemctl reload $u failed ($(firstline "$out"))"; return 1
      fi
    done
  fi
  pf=$(printf '%s\n' "$DUMP" | awk 'tolower($1) == "pidfile" { sub(/^[^ \t]+[ \t]+/, ""); print; exit }')
  pid=''
  if [ -n "$pf" ] && [ "$pf" != none ] && [ -r "$pf" ]; then pid=$(head -n 1 "$pf"); fi
  case $pid in ''|*[!0-9]*) pid='' ;; esac
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = sshd ]; then
    if kill -HUP "$pid"; then RELOAD_MSG="reloaded sshd (SIGHUP to pid $pid)"; return 0; fi
    RELOAD_MSG="kill -HUP $pid failed"; return 1
  fi
  RELOAD_MSG="sshd is not running (no live sshd in ${pf:-its PidFile}); it reads the new configuration when it starts"
  return 0
}
"#;

/// Options of the apply script besides the plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScriptOptions {
    pub reload: bool,
    /// Test-only: fail after writing so that the rollback runs (SSHBREAK_TEST_FAIL_AFTER_WRITE).
    pub fail_after_write: bool,
}

fn keys_vars(keys: &[CaKey]) -> String {
    let lines: Vec<String> = keys.iter().map(CaKey::line).collect();
    format!(
        "KEYS={}\nNKEYS={}\n",
        sh_quote(&lines.join("|")),
        keys.len()
    )
}

/// The transactional script that applies `plan` on a remote host (sent to `sh -s`). It re-checks
/// `sshd -t`, refuses when a file changed since the probe, and ends with one record
/// `@@sshbreak result ok|refused|failed MESSAGE`, plus `@@sshbreak note MESSAGE` lines.
pub fn apply_script(plan: &Plan, req: &Request, opts: ScriptOptions) -> String {
    let mut s = script_preamble(&req.config);
    s.push_str(&keys_vars(&req.keys));
    let _ = writeln!(s, "MODE={}", if req.remove { "remove" } else { "enroll" });
    s.push_str(TX_LIB);
    s.push_str(
        r#"result() { printf '@@sshbreak result %s %s\n' "$1" "$2"; exit 0; }
refuse() { result refused "$1"; }
fail() {
  if tx_rollback; then result failed "$1; restored the original files"
  else result failed "$1; restoring$TX_RESTORE_FAILED failed — the originals are in the .sshbreak-bak copies next to them"; fi
}
out=$("$SSHD" -t -f "$C" 2>&1) || refuse "sshd -t -f $C rejects the current configuration ($(firstline "$out")); fix it first — nothing was changed"
same_text() { [ -f "$1" ] && [ ! -h "$1" ] && cur=$(cat -- "$1"; printf x) && [ "$cur" = "$2" ]; }
absent() { [ ! -e "$1" ] && [ ! -h "$1" ]; }
"#,
    );
    for c in &plan.changes {
        let p = sh_quote(&c.path);
        let stale = sh_quote(&format!(
            "{} changed since it was read; run enroll-host again — nothing was changed",
            c.path
        ));
        match &c.before {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "same_text {p} {} || refuse {stale}",
                    sh_quote(&format!("{t}x"))
                );
            }
            None => {
                let _ = writeln!(s, "absent {p} || refuse {stale}");
            }
        }
    }
    for c in &plan.changes {
        let _ = writeln!(
            s,
            "tx_track {} || {{ tx_rollback; refuse \"$TX_ERR\"; }}",
            sh_quote(&c.path)
        );
    }
    for c in &plan.changes {
        let p = sh_quote(&c.path);
        let what = match &c.after {
            Some(t) => format!("tx_write {p} {}", sh_quote(t)),
            None => format!("rm -f {p}"),
        };
        let _ = writeln!(
            s,
            "{what} || fail {}",
            sh_quote(&format!("cannot write {}", c.path))
        );
    }
    s.push_str("tx_verify || fail \"$TX_ERR\"\n");
    if opts.fail_after_write {
        s.push_str("fail 'failing after the write as SSHBREAK_TEST_FAIL_AFTER_WRITE asks'\n");
    }
    s.push_str("tx_commit\n");
    if opts.reload {
        s.push_str(
            "if reload_sshd; then printf '@@sshbreak note %s\\n' \"$RELOAD_MSG\"; \
             else result failed \"the change is in place and valid, but $RELOAD_MSG; reload sshd by hand\"; fi\n",
        );
    }
    s.push_str("result ok done\n");
    s
}

/// What the apply script reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptResult {
    Ok { notes: Vec<String> },
    Refused(String),
    Failed(String),
}

pub fn parse_apply_output(output: &str) -> ScriptResult {
    let mut notes = Vec::new();
    for line in output.lines() {
        if let Some(n) = line.strip_prefix("@@sshbreak note ") {
            notes.push(n.to_string());
        } else if let Some(r) = line.strip_prefix("@@sshbreak result ") {
            let (status, msg) = r.split_once(' ').unwrap_or((r, ""));
            return match status {
                "ok" => ScriptResult::Ok { notes },
                "refused" => ScriptResult::Refused(msg.to_string()),
                _ => ScriptResult::Failed(msg.to_string()),
            };
        }
    }
    ScriptResult::Failed(
        "the script on the host stopped without a result (connection lost?); check the host's \
         sshd config by hand and look for .sshbreak-bak copies"
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// --emit: the same change for hosts sshbreak does not reach

/// Planning in sh for `--emit shell`, the same rules as [`plan`]: keys into the file already in
/// effect; otherwise the bundle to $CA_DEST and the directive into the included drop-in folder or
/// before the first Match. Then the same transaction as the apply script.
const EMIT_PLAN: &str = r#"die() { printf 'sshbreak: %s\n' "$1" >&2; exit 1; }
fail() {
  if tx_rollback; then die "$1; restored the original files"
  else die "$1; restoring$TX_RESTORE_FAILED failed — the originals are in the .sshbreak-bak copies next to them"; fi
}
v=$("$SSHD" -V 2>&1; ssh -V 2>&1)
ver=$(printf '%s\n' "$v" | sed -n 's/.*OpenSSH_[^0-9 ]*\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | head -n 1)
case $ver in
  *' '*) major=${ver% *}; minor=${ver#* } ;;
  *) die "cannot tell the OpenSSH version from sshd -V; is openssh-server installed?" ;;
esac
if [ "$major" -lt 8 ] || { [ "$major" -eq 8 ] && [ "$minor" -lt 2 ]; }; then
  die "OpenSSH $major.$minor is older than 8.2, which cannot verify the security key's CA signatures; upgrade openssh-server first"
fi
out=$("$SSHD" -t -f "$C" 2>&1) || die "sshd -t -f $C rejects the current configuration ($(firstline "$out")); fix it first — nothing was changed"
DUMP=$("$SSHD" -T -f "$C" 2>/dev/null) || {
  out=$("$SSHD" -T -f "$C" 2>&1)
  die "sshd -T -f $C fails ($(firstline "$out")), so the TrustedUserCAKeys in effect cannot be known; run it as root to see why and fix that first — nothing was changed"
}
# Keyword of each line in lower case, without a trailing `=value`.
KW='{ k = tolower($1); sub(/=.*/, "", k) }'
missing_lines() {
  src=/dev/null; [ -f "$1" ] && src=$1
  awk -v want="$KEYS" 'BEGIN { n = split(want, w, "|") }
    $0 !~ /^[ \t]*#/ && NF >= 2 { have[$1 " " $2] = 1 }
    END { for (i = 1; i <= n; i++) { split(w[i], f, " "); if (!((f[1] " " f[2]) in have)) print w[i] } }' "$src"
}
foreign_keys() {
  awk -v want="$KEYS" 'BEGIN { n = split(want, w, "|"); for (i = 1; i <= n; i++) { split(w[i], f, " "); ours[f[1] " " f[2]] = 1 } }
    $0 !~ /^[ \t]*#/ && NF >= 2 && !(($1 " " $2) in ours) { c++ }
    END { print c + 0 }' "$1"
}
insert_global() {
  awk -v mark="$MARK" -v line="TrustedUserCAKeys $CA_DEST" "$KW"'
    !done && k == "match" { print mark; print line; done = 1 }
    { print }
    END { if (!done) { print mark; print line } }' "$1"
}
find_drop_in() {
  pats=$(awk "$KW"'
    k == "match" { exit }
    k == "include" {
      i = index($1, "="); if (i && i < length($1)) print substr($1, i + 1)
      for (j = 2; j <= NF; j++) { if ($j ~ /^#/) break; p = $j; gsub(/"/, "", p); print p }
    }' "$C")
  old_ifs=$IFS; IFS='
'; set -f
  for p in $pats; do
    case $p in '~'*) continue ;; /*) ;; *) p=/etc/ssh/$p ;; esac
    d=${p%/*}; b=${p##*/}
    case $d in ''|*[*?[]*) continue ;; esac
    case 00-sshbreak.conf in $b) IFS=$old_ifs; set +f; printf '%s\n' "$d/00-sshbreak.conf"; return 0 ;; esac
  done
  IFS=$old_ifs; set +f
  return 1
}

CUR=$(effective_ca "$DUMP")
NEED_DIRECTIVE=''
case $CUR in
  ''|none)
    if awk "$KW"' k == "match" { exit } k == "trustedusercakeys" { found = 1; exit } END { exit !found }' "$C"; then
      die "$C sets TrustedUserCAKeys none, turning user certificates off on purpose; remove that line if break-glass access is wanted, then run again"
    fi
    TARGET=$CA_DEST
    if [ -f "$TARGET" ] && [ "$(foreign_keys "$TARGET")" != 0 ]; then
      die "$TARGET already exists and holds keys that are not in the bundle, which sshd would start trusting; remove it or choose another CA_DEST"
    fi
    NEED_DIRECTIVE=1 ;;
  *) TARGET=$CUR ;;
esac
ADD=$(missing_lines "$TARGET")
DROP_IN=''
if [ -n "$NEED_DIRECTIVE" ]; then
  DROP_IN=$(find_drop_in) || DROP_IN=''
  if [ -n "$DROP_IN" ] && [ ! -d "${DROP_IN%/*}" ]; then DROP_IN=''; fi
fi
if [ -z "$ADD" ] && [ -z "$NEED_DIRECTIVE" ]; then
  echo "already enrolled: $TARGET holds every sshbreak CA key"
  exit 0
fi
if [ -n "$ADD" ]; then
  old=''; [ -f "$TARGET" ] && { old=$(file_text "$TARGET") || die "cannot read $TARGET"; }
  case $old in ''|*'
') ;; *) old="$old
" ;; esac
  NEW_CA="$old$MARK
$ADD
"
fi
if [ -n "$NEED_DIRECTIVE" ]; then
  if [ -n "$DROP_IN" ]; then
    if [ -f "$DROP_IN" ]; then NEW_CONF=$(insert_global "$DROP_IN"; printf x); else NEW_CONF=$(printf '%s\n%s\n' "$MARK" "TrustedUserCAKeys $CA_DEST"; printf x); fi
    CONF_FILE=$DROP_IN
  else
    NEW_CONF=$(insert_global "$C"; printf x)
    CONF_FILE=$C
  fi
  NEW_CONF=${NEW_CONF%x}
fi

if [ -n "$ADD" ]; then tx_track "$TARGET" || { tx_rollback; die "$TX_ERR"; }; fi
if [ -n "$NEED_DIRECTIVE" ]; then tx_track "$CONF_FILE" || { tx_rollback; die "$TX_ERR"; }; fi
if [ -n "$ADD" ]; then tx_write "$TARGET" "$NEW_CA" || fail "cannot write $TARGET"; fi
if [ -n "$NEED_DIRECTIVE" ]; then tx_write "$CONF_FILE" "$NEW_CONF" || fail "cannot write $CONF_FILE"; fi
tx_verify || fail "$TX_ERR"
tx_commit
echo "enrolled: sshd trusts the sshbreak CA keys in $TARGET"
if [ "$RELOAD" = 1 ]; then
  reload_sshd || die "the change is in place and valid, but $RELOAD_MSG; reload sshd by hand"
  echo "$RELOAD_MSG"
fi
"#;

/// `--emit shell`: a standalone POSIX script that enrolls the host it runs on.
pub fn emit_shell(keys: &[CaKey], config: &str, ca_dest: &str, reload: bool) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Make this host's sshd trust the sshbreak break-glass CA (TrustedUserCAKeys), as\n\
         # `sshbreak enroll-host --local` does: keys go into the TrustedUserCAKeys file already in\n\
         # effect, or the bundle is installed and the directive added where it is global (a drop-in\n\
         # in an included folder, or before the first Match). `sshd -t` and `sshd -T` check the\n\
         # result; on any failure the original files come back. Run as root; a second run changes\n\
         # nothing. Generated by `sshbreak enroll-host --emit shell`.\n",
    );
    s.push_str(&script_preamble(config));
    let _ = writeln!(s, "CA_DEST={}", sh_quote(ca_dest));
    let _ = writeln!(s, "RELOAD={}", u8::from(reload));
    s.push_str(&keys_vars(keys));
    s.push_str("MODE=enroll\n");
    s.push_str(TX_LIB);
    s.push_str(EMIT_PLAN);
    s
}

/// A YAML double-quoted scalar that every YAML 1.1 and 1.2 parser reads back as exactly `s`:
/// printable ASCII stands for itself, everything else (line breaks, U+2028 and the like, `"`,
/// `\`) is an escape, so nothing in `s` can end the scalar or start new YAML.
fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            ' '..='~' => out.push(c),
            c if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

/// A value from the bundle or the command line for the Ansible playbook: tagged `!unsafe`, so
/// that Ansible uses it as it is and never evaluates `{{ }}` or `{% %}` in it (a key comment is
/// free text, and template code in it would run on the controller).
fn yaml_unsafe(s: &str) -> String {
    format!("!unsafe {}", yaml_str(s))
}

/// `--emit cloud-init`: the shell script, written by `write_files` and run once by `runcmd`.
/// `reload: false` (--no-reload) leaves sshd alone, as the script's `RELOAD=0` does.
pub fn emit_cloud_init(keys: &[CaKey], config: &str, ca_dest: &str, reload: bool) -> String {
    let script = emit_shell(keys, config, ca_dest, reload);
    let mut s = String::from(
        "#cloud-config\n\
         # Make sshd trust the sshbreak break-glass CA on first boot (generated by\n\
         # `sshbreak enroll-host --emit cloud-init`). The script checks the result with sshd -t and\n\
         # sshd -T and restores the original files on any failure.\n\
         write_files:\n  - path: /var/lib/sshbreak/enroll-host.sh\n    owner: 'root:root'\n    \
         permissions: '0700'\n    content: |\n",
    );
    // Key comments can only be plain text inside this literal block: `CaKey::line` has replaced
    // the characters a YAML parser would read as a line break.
    for line in script.lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "      {line}");
        }
    }
    s.push_str("runcmd:\n  - [sh, /var/lib/sshbreak/enroll-host.sh]\n");
    s
}

/// `--emit ansible`: a playbook (one play, its task list and, unless `reload` is false, the
/// reload handler) with the standard modules. The directive goes in with `blockinfile` at the top
/// of the file — always global, and blockinfile's `insertbefore` would pick the *last* Match —
/// validated by `sshd -t -f %s`. Every value that comes from the bundle or the command line is
/// `!unsafe` ([`yaml_unsafe`]); only the playbook's own expressions are templates.
pub fn emit_ansible(keys: &[CaKey], config: &str, ca_dest: &str, reload: bool) -> String {
    let mut s = String::new();
    s.push_str(
        "# Make sshd trust the sshbreak break-glass CA (generated by\n\
         # `sshbreak enroll-host --emit ansible`). Run: ansible-playbook -i INVENTORY THIS_FILE\n\
         # Keys go into the TrustedUserCAKeys file already in effect when there is one (a second\n\
         # TrustedUserCAKeys line would be ignored by sshd); otherwise the bundle is installed and\n\
         # the directive added at the top of the configuration, before any Match block.\n\
         # Values from the CA bundle are tagged !unsafe: Ansible never evaluates them as templates.\n",
    );
    if !reload {
        s.push_str(
            "# Generated with --no-reload: sshd is not reloaded; it reads the change at its next\n\
             # reload or start.\n",
        );
    }
    s.push_str(
        "- name: Trust the sshbreak break-glass CA in sshd\n  hosts: all\n  become: true\n  vars:\n",
    );
    let _ = writeln!(s, "    sshbreak_sshd_config: {}", yaml_unsafe(config));
    let _ = writeln!(s, "    sshbreak_ca_dest: {}", yaml_unsafe(ca_dest));
    s.push_str("    sshbreak_ca_keys:\n");
    for k in keys {
        let _ = writeln!(s, "      - {}", yaml_unsafe(&k.line()));
    }
    // The same keys as file content, one line each.
    let bundle: String = keys.iter().map(|k| k.line() + "\n").collect();
    let _ = writeln!(s, "    sshbreak_ca_bundle: {}", yaml_unsafe(&bundle));
    if reload {
        s.push_str(
            "    sshbreak_sshd_service: \"{{ 'ssh' if ansible_facts['os_family'] == 'Debian' else 'sshd' }}\"\n",
        );
    }
    let notify = if reload {
        "      notify: Reload sshd\n"
    } else {
        ""
    };
    s.push_str(&ANSIBLE_TASKS.replace("@NOTIFY@\n", notify));
    if reload {
        s.push_str(ANSIBLE_HANDLERS);
    }
    s
}

/// The tasks of the `--emit ansible` play; `@NOTIFY@` is the reload notification or nothing.
const ANSIBLE_TASKS: &str = r##"  tasks:
    - name: Check that sshd accepts its current configuration
      ansible.builtin.command:
        argv: [/usr/sbin/sshd, -t, -f, "{{ sshbreak_sshd_config }}"]
      changed_when: false
    - name: Read the effective sshd configuration
      ansible.builtin.command:
        argv: [/usr/sbin/sshd, -T, -f, "{{ sshbreak_sshd_config }}"]
      register: sshbreak_sshd_t
      changed_when: false
    - name: Find the TrustedUserCAKeys file already in effect
      ansible.builtin.set_fact:
        sshbreak_ca_effective: >-
          {{ sshbreak_sshd_t.stdout_lines | select('match', '^trustedusercakeys ')
          | first | default('trustedusercakeys none') | regex_replace('^trustedusercakeys ', '') }}
    - name: Add the CA keys to the TrustedUserCAKeys file already in effect
      ansible.builtin.lineinfile:
        path: "{{ sshbreak_ca_effective }}"
        line: "{{ item }}"
        create: true
        owner: root
        group: root
        mode: "0644"
      loop: "{{ sshbreak_ca_keys }}"
      when: sshbreak_ca_effective != 'none'
    - name: Install the CA bundle
      ansible.builtin.copy:
        dest: "{{ sshbreak_ca_dest }}"
        content: "{{ sshbreak_ca_bundle }}"
        owner: root
        group: root
        mode: "0644"
      when: sshbreak_ca_effective == 'none'
    - name: Trust the bundle with a global TrustedUserCAKeys
      ansible.builtin.blockinfile:
        path: "{{ sshbreak_sshd_config }}"
        marker: "# {mark} added by sshbreak enroll-host"
        block: "TrustedUserCAKeys {{ sshbreak_ca_dest }}"
        insertbefore: BOF
        validate: /usr/sbin/sshd -t -f %s
      when: sshbreak_ca_effective == 'none'
@NOTIFY@
    - name: Confirm that sshd now trusts a CA file
      ansible.builtin.command:
        argv: [/usr/sbin/sshd, -T, -f, "{{ sshbreak_sshd_config }}"]
      register: sshbreak_sshd_t_after
      changed_when: false
      failed_when: sshbreak_sshd_t_after.rc != 0 or sshbreak_sshd_t_after.stdout is search('(?m)^trustedusercakeys none$')
"##;

/// The reload handler of the `--emit ansible` play.
const ANSIBLE_HANDLERS: &str = r##"  handlers:
    - name: Reload sshd
      ansible.builtin.service:
        name: "{{ sshbreak_sshd_service }}"
        state: reloaded
"##;

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSL/MLNcGQY0xCcp/3+/zG+pss00O+5M4h7NpWQ9yry sshbreak-a";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpDIg5yyWxtXDmBWdj2nYKIpm2FhJwZGye2fAMU7c/e other-ca";
    const CONFIG: &str = "/etc/ssh/sshd_config";
    const DEST: &str = "/etc/ssh/sshbreak_user_ca.pub";
    const DEBIAN: &str = "Include /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\n\
                          UsePAM yes\n\n# Example of overriding settings on a per-user basis\n\
                          Match User anoncvs\n\tX11Forwarding no\n";

    fn key(line: &str) -> CaKey {
        CaKey::parse_line(line).unwrap()
    }

    fn request(remove: bool) -> Request {
        Request {
            keys: vec![key(KEY_A)],
            config: CONFIG.into(),
            ca_dest: DEST.into(),
            remove,
        }
    }

    /// A snapshot as a host would give it: `files` are present, every other needed file absent.
    fn snapshot(config: &str, dump: &str, files: &[(&str, &str)]) -> Snapshot {
        let mut snap = Snapshot {
            version_text: "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11".into(),
            check: Some(Ok(())),
            dump: dump.into(),
            ..Snapshot::default()
        };
        snap.files
            .insert(CONFIG.into(), FileState::Text(config.into()));
        for p in files_needed(config, dump, &request(false)) {
            snap.files.insert(p, FileState::Absent);
        }
        for d in dirs_needed(config) {
            snap.dirs.insert(d, true);
        }
        for (p, t) in files {
            snap.files
                .insert(p.to_string(), FileState::Text(t.to_string()));
        }
        snap
    }

    fn after(plan: &Plan, path: &str) -> Option<String> {
        plan.changes
            .iter()
            .find(|c| c.path == path)
            .and_then(|c| c.after.clone())
    }

    #[test]
    fn versions_are_read_from_sshd_and_ssh_output() {
        let v = |t: &str| parse_openssh_version(t);
        assert_eq!(
            v("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026"),
            Some(Version { major: 9, minor: 2 })
        );
        assert_eq!(
            v("OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2"),
            Some(Version { major: 8, minor: 1 })
        );
        // sshd before -V existed: the version is in the usage text after the complaint.
        let old = "sshd: illegal option -- V\nOpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017\nusage: sshd";
        assert_eq!(v(old), Some(Version { major: 7, minor: 4 }));
        assert_eq!(
            v("OpenSSH_10.0p2"),
            Some(Version {
                major: 10,
                minor: 0
            })
        );
        assert_eq!(v("Dropbear v2022.83"), None);
        assert_eq!(v("OpenSSH_x"), None);
        assert!(v("OpenSSH_8.2p1").unwrap() >= MIN_VERSION);
        assert!(v("OpenSSH_8.1p1").unwrap() < MIN_VERSION);
        assert!(v("OpenSSH_10.0").unwrap() > MIN_VERSION);
    }

    #[test]
    fn lines_are_tokenised_like_sshd_does() {
        let d = directive("  MATCH User alice").unwrap();
        assert_eq!(d.keyword, "match");
        assert_eq!(d.args, ["User", "alice"]);
        assert_eq!(directive("TrustedUserCAKeys=/x").unwrap().args, ["/x"]);
        assert_eq!(directive("Match=all").unwrap().keyword, "match");
        let inc = directive("Include a/*.conf \"/b c/*\" # later").unwrap();
        assert_eq!(inc.args, ["a/*.conf", "/b c/*"]);
        assert_eq!(directive("   # Match User x"), None);
        assert_eq!(directive("\t"), None);
    }

    #[test]
    fn globs_match_like_glob3() {
        assert!(glob_match("*.conf", DROP_IN));
        assert!(glob_match("*", DROP_IN));
        assert!(glob_match("0?-*.conf", DROP_IN));
        assert!(glob_match("[0-9]*.c[!x]nf", DROP_IN));
        assert!(!glob_match("[!0]*", DROP_IN));
        assert!(!glob_match("*.local", DROP_IN));
        assert!(!glob_match("sshd_config", DROP_IN));
        assert!(!glob_match("[0-9", DROP_IN));
        assert!(glob_match("\\*x", "*x"));
    }

    #[test]
    fn the_drop_in_goes_where_a_global_include_reads_it() {
        assert_eq!(
            drop_in_path(DEBIAN, SSHDIR).as_deref(),
            Some("/etc/ssh/sshd_config.d/00-sshbreak.conf")
        );
        // Relative patterns are under /etc/ssh, as sshd resolves them; several globs per line.
        let rel = "include /etc/ssh/local.conf  conf.d/*.conf\n";
        assert_eq!(
            drop_in_path(rel, SSHDIR).as_deref(),
            Some("/etc/ssh/conf.d/00-sshbreak.conf")
        );
        // An Include after a Match belongs to the Match block.
        let late = "Port 22\n  match user bob\nInclude /etc/ssh/sshd_config.d/*.conf\n";
        assert_eq!(drop_in_path(late, SSHDIR), None);
        assert_eq!(drop_in_path("Include /etc/ssh/d/*.local\n", SSHDIR), None);
        assert_eq!(drop_in_path("Include /etc/*/x/*.conf\n", SSHDIR), None);
        assert_eq!(drop_in_path("#Include /etc/ssh/d/*.conf\n", SSHDIR), None);
    }

    #[test]
    fn debian_layout_gets_the_bundle_and_a_drop_in() {
        let snap = snapshot(DEBIAN, "port 22\ntrustedusercakeys none\n", &[]);
        let plan = plan(&snap, &request(false)).unwrap();
        assert_eq!(plan.changes.len(), 2);
        // The CA file comes first, so the directive never names a missing file.
        assert_eq!(plan.changes[0].path, DEST);
        assert_eq!(plan.changes[0].before, None);
        assert_eq!(
            plan.changes[0].after.as_deref(),
            Some(format!("{MARKER}\n{}\n", key(KEY_A).line()).as_str())
        );
        let drop_in = "/etc/ssh/sshd_config.d/00-sshbreak.conf";
        assert_eq!(plan.changes[1].path, drop_in);
        assert_eq!(
            after(&plan, drop_in).unwrap(),
            format!("{MARKER}\nTrustedUserCAKeys {DEST}\n")
        );
        assert!(plan.changes.iter().all(|c| c.path != CONFIG));
    }

    #[test]
    fn without_include_the_directive_goes_before_the_first_match() {
        let config = "Port 22\n# per user\n   mAtCh User anoncvs\n\tX11Forwarding no\nMatch all\n";
        let snap = snapshot(config, "trustedusercakeys none\n", &[]);
        let plan = plan(&snap, &request(false)).unwrap();
        assert_eq!(
            after(&plan, CONFIG).unwrap(),
            format!(
                "Port 22\n# per user\n{MARKER}\nTrustedUserCAKeys {DEST}\n   mAtCh User anoncvs\n\
                 \tX11Forwarding no\nMatch all\n"
            )
        );
        // A CA file set inside a Match block is left alone, and mentioned.
        let cond = "Port 22\nMatch Group ops\n  TrustedUserCAKeys /etc/ssh/ops_ca.pub\n";
        let snap = snapshot(cond, "trustedusercakeys none\n", &[]);
        let plan = super::plan(&snap, &request(false)).unwrap();
        assert!(plan.notes[0].contains("line 3"), "{:?}", plan.notes);
        assert!(
            after(&plan, CONFIG)
                .unwrap()
                .starts_with(&format!("Port 22\n{MARKER}\n"))
        );
        // No Match and no final newline: at the end, on a line of its own.
        let snap = snapshot("Port 22", "trustedusercakeys none\n", &[]);
        let plan = super::plan(&snap, &request(false)).unwrap();
        assert_eq!(
            after(&plan, CONFIG).unwrap(),
            format!("Port 22\n{MARKER}\nTrustedUserCAKeys {DEST}\n")
        );
    }

    #[test]
    fn keys_join_the_file_already_in_effect() {
        let other = "/etc/ssh/corp_ca.pub";
        let existing = format!("# corp CA\n{KEY_B}");
        let config = "Port 22\nTrustedUserCAKeys /etc/ssh/corp_ca.pub\n";
        let snap = snapshot(
            config,
            "trustedusercakeys /etc/ssh/corp_ca.pub\n",
            &[(other, &existing)],
        );
        let plan = plan(&snap, &request(false)).unwrap();
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        assert_eq!(
            after(&plan, other).unwrap(),
            format!("{existing}\n{MARKER}\n{}\n", key(KEY_A).line())
        );
        // A second run: nothing to do.
        let done = after(&plan, other).unwrap();
        let snap = snapshot(
            config,
            "trustedusercakeys /etc/ssh/corp_ca.pub\n",
            &[(other, &done)],
        );
        assert!(super::plan(&snap, &request(false)).unwrap().is_noop());
        // The file in effect may not exist yet: it is created with the keys.
        let snap = snapshot(config, "trustedusercakeys /etc/ssh/corp_ca.pub\n", &[]);
        let plan = super::plan(&snap, &request(false)).unwrap();
        assert_eq!(plan.changes[0].before, None);
    }

    #[test]
    fn risky_states_are_refused_with_a_next_step() {
        let snap = snapshot(
            "TrustedUserCAKeys none\nPort 22\n",
            "trustedusercakeys none\n",
            &[],
        );
        let err = plan(&snap, &request(false)).unwrap_err();
        assert!(
            err.contains("line 1") && err.contains("remove that line"),
            "{err}"
        );

        let snap = snapshot("Port 22\n", "trustedusercakeys none\n", &[(DEST, KEY_B)]);
        let err = plan(&snap, &request(false)).unwrap_err();
        assert!(err.contains("not in your bundle"), "{err}");

        let mut snap = snapshot("Port 22\n", "trustedusercakeys none\n", &[]);
        snap.check = Some(Err("/x: line 3: Bad configuration option: Bogus\n".into()));
        let err = preflight(&snap, &request(false)).unwrap_err();
        assert!(err.contains("Bad configuration option") && err.contains("nothing was changed"));
        snap.check = Some(Ok(()));
        snap.version_text = "OpenSSH_7.9p1".into();
        assert!(
            preflight(&snap, &request(false))
                .unwrap_err()
                .contains("older than 8.2")
        );

        let mut req = request(false);
        req.ca_dest = "relative.pub".into();
        assert!(check_request(&req).is_err());
        req.ca_dest = "/etc/ssh/a b.pub".into();
        assert!(check_request(&req).is_err());
        req.ca_dest = "/etc/ssh/ok.pub".into();
        req.keys.clear();
        assert!(check_request(&req).unwrap_err().contains("init-ca"));
    }

    /// Enrolling then removing gives back the original files.
    fn round_trip(config: &str, extra: &[(&str, &str)], dump_before: &str) {
        let snap = snapshot(config, dump_before, extra);
        let enrolled = plan(&snap, &request(false)).unwrap();
        let mut files: BTreeMap<String, Option<String>> = snap
            .files
            .iter()
            .map(|(p, s)| {
                let t = match s {
                    FileState::Text(t) => Some(t.clone()),
                    _ => None,
                };
                (p.clone(), t)
            })
            .collect();
        for c in &enrolled.changes {
            files.insert(c.path.clone(), c.after.clone());
        }
        let effective = effective_ca_file(dump_before).unwrap_or_else(|| DEST.to_string());
        let mut snap2 = snapshot(
            files[CONFIG].as_deref().unwrap(),
            &format!("trustedusercakeys {effective}\n"),
            &[],
        );
        for (p, t) in &files {
            snap2.files.insert(
                p.clone(),
                t.clone().map_or(FileState::Absent, FileState::Text),
            );
        }
        let removed = plan(&snap2, &request(true)).unwrap();
        for c in &removed.changes {
            files.insert(c.path.clone(), c.after.clone());
        }
        for (p, s) in &snap.files {
            let original = match s {
                FileState::Text(t) => Some(t.clone()),
                _ => None,
            };
            assert_eq!(files[p], original, "{p} after enroll + remove");
        }
    }

    #[test]
    fn remove_undoes_enroll() {
        round_trip(DEBIAN, &[], "trustedusercakeys none\n");
        // (A file without a final newline keeps the one enroll added: the only byte not undone.)
        round_trip(
            "Port 22\nMatch User x\n  X11Forwarding no\n",
            &[],
            "trustedusercakeys none\n",
        );
        round_trip(
            "TrustedUserCAKeys /etc/ssh/corp_ca.pub\n",
            &[("/etc/ssh/corp_ca.pub", &format!("{KEY_B}\n"))],
            "trustedusercakeys /etc/ssh/corp_ca.pub\n",
        );
    }

    #[test]
    fn remove_keeps_a_directive_that_still_serves_other_keys() {
        let config = format!("Port 22\n{MARKER}\nTrustedUserCAKeys {DEST}\n");
        let ca = format!("{MARKER}\n{KEY_A}\n{KEY_B}\n");
        let snap = snapshot(
            &config,
            &format!("trustedusercakeys {DEST}\n"),
            &[(DEST, &ca)],
        );
        let plan = plan(&snap, &request(true)).unwrap();
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        assert_eq!(after(&plan, DEST).unwrap(), format!("{KEY_B}\n"));
        assert!(plan.notes[0].contains("kept"), "{:?}", plan.notes);
        // Nothing of sshbreak's left: nothing to do.
        let snap = snapshot("Port 22\n", "trustedusercakeys none\n", &[]);
        assert!(super::plan(&snap, &request(true)).unwrap().is_noop());
    }

    #[test]
    fn confirmation_needs_every_key_in_the_file_in_effect() {
        let keys = [key(KEY_A), key(KEY_B)];
        let dump = "trustedusercakeys /x\n";
        assert!(confirm(dump, Some(&format!("{KEY_A}\n{KEY_B}\n")), &keys, false).is_ok());
        let err = confirm(dump, Some(&format!("# {KEY_A}\n{KEY_B}\n")), &keys, false).unwrap_err();
        assert!(err.contains("holds 1 of the 2"), "{err}");
        assert!(confirm("trustedusercakeys none\n", None, &keys, false).is_err());
        assert!(confirm(dump, None, &keys, false).is_err());
        assert!(confirm("trustedusercakeys none\n", None, &keys, true).is_ok());
        assert!(confirm(dump, Some(KEY_B), &keys, true).is_err());
        assert!(confirm(dump, Some("# nothing\n"), &keys, true).is_ok());
    }

    #[test]
    fn diffs_look_like_diff_u() {
        let change = Change {
            path: "/etc/ssh/sshd_config".into(),
            before: Some("a\nb\nc\nd\ne\nf\ng\nh\n".into()),
            after: Some("a\nb\nc\nd\nX\ne\nf\ng\nh\n".into()),
        };
        assert_eq!(
            unified_diff(&change),
            "--- /etc/ssh/sshd_config\n+++ /etc/ssh/sshd_config\n@@ -2,6 +2,7 @@\n b\n c\n d\n+X\n e\n f\n g\n"
        );
        let new = Change {
            path: "/n".into(),
            before: None,
            after: Some("x".into()),
        };
        assert_eq!(
            unified_diff(&new),
            "--- /dev/null\n+++ /n\n@@ -0,0 +1,1 @@\n+x\n\\ No newline at end of file\n"
        );
        let gone = Change {
            path: "/n".into(),
            before: Some("x\n".into()),
            after: None,
        };
        assert_eq!(
            unified_diff(&gone),
            "--- /n\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-x\n"
        );
    }

    /// An in-memory host: files, folders, and an `sshd -T` computed from the files by a closure.
    struct FakeHost {
        files: BTreeMap<String, String>,
        dirs: BTreeSet<String>,
        dump: fn(&BTreeMap<String, String>) -> String,
        dump_fails: Option<String>,
        fail_write: Option<String>,
    }

    impl HostOps for FakeHost {
        fn read(&mut self, path: &str) -> Result<FileState> {
            Ok(self
                .files
                .get(path)
                .map_or(FileState::Absent, |t| FileState::Text(t.clone())))
        }
        fn exists(&mut self, path: &str) -> Result<bool> {
            Ok(self.files.contains_key(path))
        }
        fn is_dir(&mut self, path: &str) -> Result<bool> {
            Ok(self.dirs.contains(path))
        }
        fn write(&mut self, path: &str, text: &str) -> Result<()> {
            if self.fail_write.as_deref() == Some(path) {
                anyhow::bail!("cannot write {path}: disk full");
            }
            self.files.insert(path.into(), text.into());
            Ok(())
        }
        fn copy(&mut self, from: &str, to: &str) -> Result<()> {
            let t = self.files[from].clone();
            self.files.insert(to.into(), t);
            Ok(())
        }
        fn rename(&mut self, from: &str, to: &str) -> Result<()> {
            let t = self.files.remove(from).unwrap();
            self.files.insert(to.into(), t);
            Ok(())
        }
        fn remove(&mut self, path: &str) -> Result<()> {
            self.files.remove(path);
            Ok(())
        }
        fn check(&mut self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn dump(&mut self) -> std::result::Result<String, String> {
            match &self.dump_fails {
                Some(msg) => Err(msg.clone()),
                None => Ok((self.dump)(&self.files)),
            }
        }
    }

    /// What sshd would say for the fake files: the first directive in the drop-in or main config.
    fn honest_dump(files: &BTreeMap<String, String>) -> String {
        let drop_in = "/etc/ssh/sshd_config.d/00-sshbreak.conf";
        let text = format!(
            "{}{}",
            files.get(drop_in).cloned().unwrap_or_default(),
            files[CONFIG]
        );
        let value = global_directives(&text)
            .into_iter()
            .find(|(_, d)| d.keyword == "trustedusercakeys")
            .and_then(|(_, d)| d.args.first().cloned())
            .unwrap_or_else(|| "none".into());
        format!("port 22\ntrustedusercakeys {value}\n")
    }

    fn fake(config: &str) -> FakeHost {
        FakeHost {
            files: BTreeMap::from([(CONFIG.to_string(), config.to_string())]),
            dirs: BTreeSet::from(["/etc/ssh".to_string(), "/etc/ssh/sshd_config.d".to_string()]),
            dump: honest_dump,
            dump_fails: None,
            fail_write: None,
        }
    }

    fn snapshot_of(host: &mut FakeHost, req: &Request) -> Snapshot {
        read_snapshot(host, "OpenSSH_9.2".into(), req).unwrap()
    }

    #[test]
    fn an_include_of_a_missing_folder_gets_the_directive_in_the_main_config() {
        let mut snap = snapshot(DEBIAN, "trustedusercakeys none\n", &[]);
        snap.dirs.insert("/etc/ssh/sshd_config.d".into(), false);
        let plan = plan(&snap, &request(false)).unwrap();
        assert_eq!(plan.changes.len(), 2, "{plan:?}");
        assert_eq!(plan.changes[0].path, DEST);
        let config = after(&plan, CONFIG).unwrap();
        let directive = config.find("TrustedUserCAKeys").unwrap();
        assert!(directive < config.find("Match User").unwrap(), "{config}");
        assert!(config.starts_with("Include /etc/ssh/sshd_config.d/*.conf\n"));
        assert!(
            plan.actions[1].contains("before its first Match")
                && plan.actions[1].contains("/etc/ssh/sshd_config.d, does not exist"),
            "{:?}",
            plan.actions
        );
        // Not knowing is no reason to guess.
        snap.dirs.clear();
        let err = super::plan(&snap, &request(false)).unwrap_err();
        assert!(
            err.contains("internal") && err.contains("sshd_config.d"),
            "{err}"
        );

        // Through the transaction: the fake host has no such folder, and nothing is written there.
        let mut host = fake(DEBIAN);
        host.dirs.remove("/etc/ssh/sshd_config.d");
        let req = request(false);
        let snap = snapshot_of(&mut host, &req);
        assert_eq!(snap.dirs.get("/etc/ssh/sshd_config.d"), Some(&false));
        let plan = super::plan(&snap, &req).unwrap();
        apply(&mut host, &plan, &req, false).unwrap();
        assert!(host.files[CONFIG].contains(&format!("TrustedUserCAKeys {DEST}")));
        assert!(host.files.keys().all(|p| !p.contains("sshd_config.d")));
    }

    #[test]
    fn a_failing_sshd_dump_is_refused_with_its_message_and_a_next_step() {
        let mut host = fake(DEBIAN);
        host.dump_fails =
            Some("\n/etc/ssh/sshd_config line 9: unsupported option \"Foo\".\nmore\n".into());
        let req = request(false);
        let snap = snapshot_of(&mut host, &req);
        assert_eq!(snap.dump, "");
        for err in [
            preflight(&snap, &req).unwrap_err(),
            plan(&snap, &req).unwrap_err(),
            plan(&snap, &request(true)).unwrap_err(),
        ] {
            assert!(
                err.contains("`sshd -T -f /etc/ssh/sshd_config` fails")
                    && err.contains("line 9: unsupported option")
                    && !err.contains("more")
                    && !err.contains('\n')
                    && err.contains("nothing was changed"),
                "{err}"
            );
        }
    }

    #[test]
    fn key_comments_cannot_break_out_of_a_yaml_line() {
        let k = CaKey {
            algo: "ssh-ed25519".into(),
            blob: "AAAA".into(),
            comment: "a\u{2028}runcmd: [id]\u{2029}b\u{feff}|\\".into(),
        };
        assert_eq!(k.line(), "ssh-ed25519 AAAA a_runcmd: [id]_b___");
        assert_eq!(
            yaml_str("it's \"{{ x }}\" \\ \n é\u{2028}\u{1F511}"),
            "\"it's \\\"{{ x }}\\\" \\\\ \\n \\u00E9\\u2028\\U0001F511\""
        );
    }

    #[test]
    fn ansible_gets_bundle_values_only_as_unsafe_and_no_reload_when_told() {
        let evil = CaKey {
            comment: "ca {{ lookup('pipe','id') }} {% for x in y %}".into(),
            ..key(KEY_A)
        };
        let keys = [evil, key(KEY_B)];
        let play = emit_ansible(&keys, "/etc/ssh/sshd_config", "/etc/ssh/{{7*7}}.pub", true);
        let tainted: Vec<&str> = play
            .lines()
            .filter(|l| l.contains("lookup(") || l.contains("{{7*7}}") || l.contains("{%"))
            .collect();
        assert_eq!(tainted.len(), 3, "the two keys and the bundle: {play}");
        for l in &tainted {
            let value = l.trim_start().trim_start_matches("- ");
            let value = value.split_once(": ").map_or(value, |(_, v)| v);
            assert!(value.starts_with("!unsafe \""), "{l}");
        }
        assert!(play.contains("sshbreak_ca_dest: !unsafe \"/etc/ssh/{{7*7}}.pub\""));
        assert!(play.contains("notify: Reload sshd") && play.contains("handlers:"));
        let quiet = emit_ansible(&keys, "/etc/ssh/sshd_config", "/etc/ssh/ca.pub", false);
        assert!(
            !quiet.contains("notify") && !quiet.contains("handlers:"),
            "{quiet}"
        );
        assert!(!quiet.contains("sshbreak_sshd_service"), "{quiet}");

        let cloud = emit_cloud_init(&keys, "/etc/ssh/sshd_config", "/etc/ssh/ca.pub", false);
        assert!(cloud.contains("      RELOAD=0\n"), "{cloud}");
        let cloud = emit_cloud_init(&keys, "/etc/ssh/sshd_config", "/etc/ssh/ca.pub", true);
        assert!(cloud.contains("      RELOAD=1\n"), "{cloud}");
    }

    #[test]
    fn the_transaction_applies_and_leaves_no_copies() {
        let mut host = fake(DEBIAN);
        let req = request(false);
        let plan = plan(&snapshot_of(&mut host, &req), &req).unwrap();
        apply(&mut host, &plan, &req, false).unwrap();
        assert!(host.files[DEST].contains(&key(KEY_A).blob));
        assert!(host.files.keys().all(|p| !p.ends_with(BACKUP_SUFFIX)));
        // And a second plan is empty.
        assert!(
            super::plan(&snapshot_of(&mut host, &req), &req)
                .unwrap()
                .is_noop()
        );
    }

    #[test]
    fn a_failing_check_after_the_write_restores_every_byte() {
        // The confirming `sshd -T` reports no CA file, as if the directive had landed in a Match.
        let config = "Port 22\nMatch User x\n  X11Forwarding no";
        let mut host = fake(config);
        host.files
            .insert(DEST.into(), format!("{MARKER}\n{KEY_A}\n"));
        let req = request(false);
        let plan = plan(&snapshot_of(&mut host, &req), &req).unwrap();
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        let original = host.files.clone();
        host.dump = |_| "trustedusercakeys none\n".into();
        let err = apply(&mut host, &plan, &req, false).unwrap_err();
        assert!(
            err.contains("no TrustedUserCAKeys") && err.contains("restored"),
            "{err}"
        );
        assert_eq!(host.files, original);

        // The test hook fails after a good write; created files go away too.
        let mut host = fake(DEBIAN);
        let original = host.files.clone();
        let plan = super::plan(&snapshot_of(&mut host, &req), &req).unwrap();
        let err = apply(&mut host, &plan, &req, true).unwrap_err();
        assert!(err.contains("SSHBREAK_TEST_FAIL_AFTER_WRITE"), "{err}");
        assert_eq!(host.files, original);

        // A write failing half way: the first file is restored.
        let mut host = fake(DEBIAN);
        let plan = super::plan(&snapshot_of(&mut host, &req), &req).unwrap();
        host.fail_write = Some("/etc/ssh/sshd_config.d/00-sshbreak.conf".into());
        assert!(
            apply(&mut host, &plan, &req, false)
                .unwrap_err()
                .contains("disk full")
        );
        assert_eq!(host.files, original);
    }

    #[test]
    fn the_transaction_refuses_stale_plans_and_interrupted_runs() {
        let req = request(false);
        let mut host = fake("Port 22\n");
        let plan = plan(&snapshot_of(&mut host, &req), &req).unwrap();
        host.files.insert(CONFIG.into(), "Port 2222\n".into());
        let err = apply(&mut host, &plan, &req, false).unwrap_err();
        assert!(err.contains("changed while sshbreak was planning"), "{err}");

        let mut host = fake("Port 22\n");
        let plan = super::plan(&snapshot_of(&mut host, &req), &req).unwrap();
        let bak = backup_path(CONFIG);
        assert_eq!(bak, "/etc/ssh/.sshd_config.sshbreak-bak");
        host.files.insert(bak.clone(), "old".into());
        let before = host.files.clone();
        let err = apply(&mut host, &plan, &req, false).unwrap_err();
        assert!(err.contains("interrupted"), "{err}");
        assert_eq!(host.files, before);
    }

    #[test]
    fn shell_quoting_and_script_records() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        let out = "banner\n@@sshbreak uid 0 x x\n@@sshbreak sshd-version 0 x x4f70656e5353485f392e32\n\
                   @@sshbreak check 0 x x\n@@sshbreak dump 0 x x706f7274203232\n\
                   @@sshbreak file present x2f61 x6869\n@@sshbreak file absent x2f62 x\n\
                   @@sshbreak end 0 x x\n";
        let snap = parse_probe(out).unwrap();
        assert_eq!(snap.uid, Some(0));
        assert_eq!(snap.version_text, "OpenSSH_9.2");
        assert_eq!(snap.check, Some(Ok(())));
        assert_eq!(snap.dump, "port 22");
        assert_eq!(snap.files["/a"], FileState::Text("hi".into()));
        assert_eq!(snap.files["/b"], FileState::Absent);
        assert_eq!(snap.dump_error, None);
        assert!(parse_probe("@@sshbreak uid 0 x x\n").is_err());
        // A failing sshd -T, and folders.
        let out = "@@sshbreak dump 255 x x6f6f7073\n@@sshbreak dir present x2f64 x\n\
                   @@sshbreak dir absent x2f65 x\n@@sshbreak end 0 x x\n";
        let snap = parse_probe(out).unwrap();
        assert_eq!(snap.dump, "");
        assert_eq!(snap.dump_error.as_deref(), Some("oops"));
        assert!(snap.dirs["/d"]);
        assert!(!snap.dirs["/e"]);
        assert!(parse_probe("@@sshbreak file present x2f6 x\n@@sshbreak end 0 x x\n").is_err());

        assert_eq!(
            parse_apply_output("@@sshbreak note reloaded\n@@sshbreak result ok done\n"),
            ScriptResult::Ok {
                notes: vec!["reloaded".into()]
            }
        );
        assert_eq!(
            parse_apply_output("@@sshbreak result refused sshd -t rejects it\n"),
            ScriptResult::Refused("sshd -t rejects it".into())
        );
        assert!(matches!(parse_apply_output(""), ScriptResult::Failed(_)));
    }
}
