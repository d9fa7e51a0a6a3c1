//! The command line, declared with clap's derive API. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::token::TokenSpec;

/// Break-glass SSH access: a FIDO2 security key is the SSH user certificate authority.
///
/// Once: `sshbreak init-ca` on a fresh key, then `sshbreak enroll-host` on every host.
/// During an outage: `sshbreak connect user@host` — one touch, a certificate valid for minutes.
#[derive(Debug, Parser)]
#[command(name = "sshbreak", version, max_term_width = 100)]
pub struct Cli {
    /// Security key to use: `hid` (the one FIDO key plugged in), `hid:<device path>`, or
    /// `soft:<file>` (a software token for tests and demos — not a hardware key).
    #[arg(
        long,
        global = true,
        env = "SSHBREAK_TOKEN",
        default_value = "hid",
        value_name = "SPEC"
    )]
    pub token: TokenSpec,

    /// Where sshbreak keeps CA handles, the trust bundle, certificates and the audit log
    /// [default: ~/.sshbreak]
    #[arg(long, global = true, env = "SSHBREAK_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the CA on a security key (once per key) and add it to the trust bundle.
    InitCa(InitCaArgs),
    /// Make a host's sshd trust the CA bundle (TrustedUserCAKeys), without locking anyone out.
    EnrollHost(EnrollHostArgs),
    /// Issue a short-lived certificate: fresh key pair, one touch of the security key.
    Issue(IssueArgs),
    /// Show what a certificate (or key, handle, bundle) is, and whether it is valid right now.
    Inspect(InspectArgs),
    /// Issue a certificate if needed, then run ssh with it.
    Connect(ConnectArgs),
    /// Run the whole workflow against a throwaway sshd on 127.0.0.1, with a software token.
    Demo(DemoArgs),
    /// Test the break-glass path on hosts with a 60-second certificate that can only run `true`.
    Drill(DrillArgs),
    /// Inspect and manage security keys (list, set PIN).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Check the hash chain of the issuance audit log.
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct InitCaArgs {
    /// FIDO application (rp id) of the CA credential; must start with `ssh:` and name something
    /// (bare `ssh:` is the default of `ssh-keygen -O resident` and would be clobbered).
    #[arg(long, default_value = crate::token::DEFAULT_APPLICATION, value_name = "ssh:NAME")]
    pub application: String,

    /// Require the PIN for every signature, on top of the touch.
    #[arg(long)]
    pub verify_required: bool,

    /// Add this key as a backup CA to the existing trust bundle (keep it in a different safe).
    #[arg(long, conflicts_with = "recover")]
    pub backup: bool,

    /// Rebuild the local handle and bundle entry from the key alone (needs the PIN).
    #[arg(long)]
    pub recover: bool,

    /// Replace an existing sshbreak CA credential on the key. The old CA is gone for good: hosts
    /// that trust only it must be re-enrolled.
    #[arg(long, conflicts_with = "recover")]
    pub force: bool,

    /// Name of this CA in the home directory and the bundle comment
    /// [default: `primary`, or `backup-N` with --backup]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = "\
Hosts file: one host a line, `DEST [sshd_config=PATH] [ca_dest=PATH]`, where DEST is \
[USER@]HOST or ssh://[USER@]HOST[:PORT] (USER@HOST or ssh://USER@HOST[:PORT] with --verify, which \
drills that account) and the optional fields override --sshd-config and --ca-dest for that host; \
`#` starts a comment.

What it does on each host: checks OpenSSH >= 8.2, that `sshd -t` accepts the current config and \
that `sshd -T` can show it (else refuses, changing nothing); adds the bundle's keys to the \
TrustedUserCAKeys file already in effect, or installs the bundle at --ca-dest and adds \
`TrustedUserCAKeys` where it is global (a drop-in 00-sshbreak.conf in an existing folder the \
config includes before any Match, else before the first Match); writes atomically, then requires \
`sshd -t` to pass and `sshd -T` to show every key trusted, restoring the original files \
otherwise; reloads sshd (systemctl for /etc/ssh/sshd_config, else SIGHUP to its PidFile) without \
dropping sessions. A second run changes nothing. Each ssh connection gives up after 10 s without \
an answer (ConnectTimeout; your own -o ConnectTimeout wins) and each host gets at most 2 minutes \
in all.

Exit status: 0 every host ended enrolled (or removed); 1 a host was refused or failed; 2 usage.")]
pub struct EnrollHostArgs {
    /// Hosts to enroll over your normal ssh, as [USER@]HOST or ssh://[USER@]HOST[:PORT]. With
    /// --verify the user is required: USER@HOST or ssh://USER@HOST[:PORT].
    #[arg(value_name = "[USER@]HOST")]
    pub hosts: Vec<String>,

    /// Enroll this machine itself (run as root on the host).
    #[arg(long, conflicts_with_all = ["hosts", "hosts_file", "emit"])]
    pub local: bool,

    /// Read more hosts from a file (format below).
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,

    /// Print the same change for hosts managed elsewhere instead of applying it: a POSIX sh
    /// script, a cloud-init user-data snippet, or an Ansible playbook (tasks with `sshd -t -f %s`
    /// validation and a reload handler). --no-reload leaves the reload out of each.
    #[arg(long, value_name = "FORMAT", value_parser = ["shell", "cloud-init", "ansible"])]
    pub emit: Option<String>,

    /// sshd configuration file on the host.
    #[arg(long, default_value = "/etc/ssh/sshd_config", value_name = "PATH")]
    pub sshd_config: String,

    /// Where to install the CA bundle on the host (when no TrustedUserCAKeys is in effect yet).
    #[arg(
        long,
        default_value = "/etc/ssh/sshbreak_user_ca.pub",
        value_name = "PATH"
    )]
    pub ca_dest: String,

    /// Do not reload sshd after the change.
    #[arg(long)]
    pub no_reload: bool,

    /// Show the change as a diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Take sshbreak's CA keys and directive back out (keeping a TrustedUserCAKeys line that
    /// still serves other CA keys).
    #[arg(long)]
    pub remove: bool,

    /// After enrolling, drill every enrolled host with `sshbreak drill` (one touch for the whole
    /// run); a host whose drill does not pass counts as failed. Every host must then name its
    /// user (USER@HOST or ssh://USER@HOST[:PORT]): the drill certificate is made for that account.
    #[arg(long)]
    pub verify: bool,

    /// Hosts to work on at the same time.
    #[arg(short = 'j', long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,

    /// Run the remote side through `sudo -n` (needs NOPASSWD).
    #[arg(long)]
    pub sudo: bool,

    /// ssh port.
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Extra ssh option, as `ssh -o` (repeatable); yours come first, so they win over sshbreak's
    /// defaults (BatchMode=yes, ConnectTimeout=10, ServerAliveInterval=15, ServerAliveCountMax=3).
    #[arg(short = 'o', value_name = "SSH_OPTION")]
    pub ssh_options: Vec<String>,

    /// ssh configuration file, as `ssh -F`, for the connections and the --verify drill (`-F none`
    /// ignores ~/.ssh/config).
    #[arg(short = 'F', value_name = "CONFIG")]
    pub ssh_config: Option<String>,
}

/// Options shared by `issue` and `connect` that shape the certificate.
#[derive(Debug, Args, Clone)]
pub struct CertArgs {
    /// Validity: `10m` (now − backdate … now + 10m), or ssh-keygen's forms: `+10m`, `-5m:+60m`,
    /// `20261204:20261205`. Units s m h d w. Over 24h needs --allow-long-validity.
    #[arg(
        short = 'V',
        long,
        default_value = "10m",
        value_name = "VALIDITY",
        allow_hyphen_values = true
    )]
    pub validity: String,

    /// How far before now the certificate starts, for hosts whose clock is behind.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    pub backdate: String,

    /// Allow a validity over 24h, or `forever`.
    #[arg(long)]
    pub allow_long_validity: bool,

    /// Key id recorded in sshd's log [default: sshbreak:<principals>:<you>@<host>:<time>[:<reason>]]
    #[arg(short = 'I', long, value_name = "KEY_ID")]
    pub key_id: Option<String>,

    /// Why access is needed; goes into the key id and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Certificate option as in ssh-keygen -O: clear, no-pty, force-command=CMD,
    /// source-address=CIDR[,CIDR], verify-required, extension:NAME[=VALUE], … (repeatable)
    #[arg(short = 'O', value_name = "OPTION")]
    pub options: Vec<String>,

    /// Type of the fresh key pair.
    #[arg(short = 't', long = "type", default_value = "ed25519", value_parser = ["ed25519", "ecdsa"])]
    pub key_type: String,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Principals (accounts) the certificate is valid for, comma-separated. Required: a
    /// certificate without principals would be valid for every account.
    #[arg(short = 'n', long, value_name = "PRINCIPALS", required = true)]
    pub principals: String,

    #[command(flatten)]
    pub cert: CertArgs,

    /// Certify this existing public key instead of making a new key pair (writes only the
    /// certificate, next to it: the safe way to give a colleague access).
    #[arg(long, value_name = "FILE", conflicts_with = "key_type")]
    pub pubkey: Option<PathBuf>,

    /// Write the key to PATH, PATH.pub and PATH-cert.pub [default: a new name under <home>/certs/].
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,

    /// Print a JSON object (paths, serial, key id, validity) instead of the paths.
    #[arg(long)]
    pub json: bool,
}

/// Exit status: 0 when every input parsed, its signature verifies, it is valid now and its CA is
/// trusted (when a trust source exists); 1 when any input fails one of those; 2 for usage or I/O
/// errors.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 all inputs good; 1 an input is invalid, expired, tampered or \
untrusted; 2 usage or I/O error."
)]
pub struct InspectArgs {
    /// Certificates, public keys, handle files or bundles; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// One JSON object per input, as an array.
    #[arg(long)]
    pub json: bool,

    /// Trusted CA keys (bundle format) [default: <home>/trusted-ca.pub when it exists].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(trailing_var_arg = true)]
pub struct ConnectArgs {
    /// Principal to certify [default: the USER of the destination].
    #[arg(short = 'n', long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,

    /// Validity of a newly issued certificate (see `issue -V`).
    #[arg(
        short = 'V',
        long,
        default_value = "10m",
        value_name = "VALIDITY",
        allow_hyphen_values = true
    )]
    pub validity: String,

    /// ssh port.
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,

    /// ssh option, as `ssh -o` (repeatable).
    #[arg(short = 'o', value_name = "SSH_OPTION")]
    pub ssh_options: Vec<String>,

    /// Jump host, as `ssh -J`.
    #[arg(short = 'J', value_name = "JUMP")]
    pub jump: Option<String>,

    /// ssh configuration file, as `ssh -F` (`-F none` ignores ~/.ssh/config).
    #[arg(short = 'F', value_name = "CONFIG")]
    pub config: Option<String>,

    /// Why access is needed; goes into the key id and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Destination, as [USER@]HOST.
    #[arg(value_name = "[USER@]HOST", allow_hyphen_values = true)]
    pub destination: String,

    /// Command to run on the host.
    #[arg(value_name = "COMMAND", allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The demo uses its own temporary home and software token: --home and --token are ignored, and
/// neither ~/.sshbreak nor ~/.ssh is touched.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temporary directory (and print its path) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 every host passed; 1 a host did not pass (or, with \
--status, a drill is stale or none is recorded); 2 usage error."
)]
pub struct DrillArgs {
    /// Hosts to test, as USER@HOST or ssh://USER@HOST[:PORT]. The user is required: the
    /// certificate is made for exactly the accounts named.
    #[arg(value_name = "USER@HOST")]
    pub hosts: Vec<String>,

    /// Read more hosts from a file (`-`: stdin), one USER@HOST or ssh://USER@HOST[:PORT] per line
    /// (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,

    /// ssh port (overrides a port in ssh:// destinations, as in ssh).
    #[arg(short = 'p', value_name = "PORT")]
    pub port: Option<u16>,

    /// ssh option, as `ssh -o` (repeatable). Your ssh config (or the one -F names) is used too,
    /// but the drill's own settings (BatchMode, ConnectTimeout, IdentitiesOnly, no agent, no
    /// connection sharing, LogLevel) come first and win.
    #[arg(short = 'o', value_name = "SSH_OPTION")]
    pub ssh_options: Vec<String>,

    /// ssh configuration file, as `ssh -F` (`-F none` ignores ~/.ssh/config, which ssh finds
    /// through your passwd entry whatever $HOME says).
    #[arg(short = 'F', value_name = "CONFIG")]
    pub ssh_config: Option<String>,

    /// Hosts to try at the same time. The certificate lasts 60 seconds: a large list needs
    /// enough of them.
    #[arg(short = 'j', long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,

    /// Seconds to wait for each connection (ssh ConnectTimeout).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,

    /// List hosts with the age of their last good drill instead of running one.
    #[arg(
        long,
        conflicts_with_all = [
            "hosts", "hosts_file", "port", "ssh_options", "ssh_config", "jobs", "timeout"
        ]
    )]
    pub status: bool,

    /// With --status: flag hosts whose last good drill is older than this many days
    /// [default: 30].
    #[arg(long, value_name = "DAYS")]
    pub max_age_days: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List security keys: AAGUID, firmware, PIN set, free resident slots.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the key's PIN, or change it (a YubiKey needs one before it holds resident keys).
    /// The PINs are read from the terminal, or from the files named by SSHBREAK_PIN_FILE
    /// (current) and SSHBREAK_NEW_PIN_FILE (new).
    SetPin,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Verify the hash chain: every line must carry the hash of the line before it.
    #[arg(long)]
    pub verify: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
