//! `sshbreak connect [USER@]HOST [COMMAND…]`: reuse a still-valid certificate or issue one (same
//! code path as `sshbreak issue`), then replace this process with `ssh` using it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Result;
use ssh_key::{Certificate, PublicKey};

use super::issue::{self, CERTS_DIR, IssueParams};
use super::{Ctx, hinted, usage};
use crate::ca;
use crate::cli::{CertArgs, ConnectArgs};
use crate::{policy, ui};

/// A certificate is reused only with at least this much validity left.
pub const MIN_REMAINING_SECS: u64 = 60;

pub fn run(args: &ConnectArgs, ctx: &Ctx) -> Result<ExitCode> {
    let principal = principal_for(args)?;
    let now = issue::unix_now()?;
    let (key, cert, valid_before) = match reusable(ctx, &principal, now)? {
        Some(found) => {
            ui::status(format!(
                "Reusing {} ({} left, no touch needed)",
                found.1.display(),
                ui::human_duration(found.2.saturating_sub(now))
            ));
            found
        }
        None => {
            let params = IssueParams {
                principals: vec![principal.clone()],
                cert: cert_args(args),
                pubkey: None,
                output: None,
                force: false,
            };
            let issued = issue::issue(ctx, &params)?;
            let key = issued
                .key
                .clone()
                .ok_or_else(|| anyhow::anyhow!("internal: no key was generated"))?;
            (key, issued.certificate, issued.valid_before_unix)
        }
    };
    let mut ssh = ssh_command(args, &key, &cert);
    let config_hint = if args.config.is_none() && user_ssh_config_exists() {
        " — if your ~/.ssh/config gets in the way, add -F none"
    } else {
        ""
    };
    ui::status(format!(
        "Connecting to {} as {principal} (certificate valid until {}){config_hint}",
        args.destination,
        crate::timefmt::iso(valid_before)
    ));
    // exec only returns on failure; on success ssh's exit status becomes ours.
    let err = ssh.exec();
    if err.kind() == std::io::ErrorKind::NotFound {
        return Err(hinted(
            "ssh was not found in PATH",
            "install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)",
        ));
    }
    Err(anyhow::anyhow!("cannot run ssh: {err}"))
}

/// The principal to certify: `-n`, else the USER of `USER@HOST`. Anything that ssh could read as
/// an option is refused, so a destination can never smuggle in `-oProxyCommand=…`.
fn principal_for(args: &ConnectArgs) -> Result<String> {
    let dest = &args.destination;
    if dest.starts_with('-') {
        return Err(usage(format!(
            "destination `{dest}` begins with `-`; sshbreak does not pass options through the destination"
        )));
    }
    if dest.is_empty() {
        return Err(usage("the destination is empty"));
    }
    let from_dest = dest
        .strip_prefix("ssh://")
        .unwrap_or(dest)
        .rsplit_once('@')
        .map(|(user, _)| user.to_string());
    let principal = match (&args.principal, from_dest) {
        (Some(p), _) => p.clone(),
        (None, Some(u)) if !u.is_empty() => u,
        _ => {
            return Err(usage(format!(
                "no user in `{dest}`: write USER@{dest}, or name the principal with -n"
            )));
        }
    };
    if principal.starts_with('-') {
        return Err(usage(format!("principal `{principal}` begins with `-`")));
    }
    // connect logs in as one account; `-n a,b` would otherwise certify one principal named "a,b".
    match policy::parse_principals(&principal).map_err(|e| usage(format!("{e:#}")))?[..] {
        [ref one] => Ok(one.clone()),
        _ => Err(usage(format!(
            "connect certifies one principal, not `{principal}`; use `sshbreak issue -n` for several"
        ))),
    }
}

fn cert_args(args: &ConnectArgs) -> CertArgs {
    CertArgs {
        validity: args.validity.clone(),
        backdate: "5m".into(),
        allow_long_validity: false,
        key_id: None,
        reason: args.reason.clone(),
        options: Vec::new(),
        key_type: "ed25519".into(),
    }
}

/// A certificate issued earlier that can be used again without a touch: for this principal, signed
/// by a CA in the bundle (signature verified), with exactly what `connect` itself would issue (no
/// critical options such as a drill's `force-command=true`, and the default extensions: a
/// `-O no-pty` certificate would make a poor interactive session), its own key next to it, and at
/// least [`MIN_REMAINING_SECS`] of validity left. The one that lasts longest wins.
fn reusable(ctx: &Ctx, principal: &str, now: u64) -> Result<Option<(PathBuf, PathBuf, u64)>> {
    let dir = ctx.home.join(CERTS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let Ok(bundle) = ca::read_bundle(&ca::bundle_path(&ctx.home)) else {
        return Ok(None);
    };
    let mut best: Option<(PathBuf, PathBuf, u64)> = None;
    for entry in entries.flatten() {
        let cert_path = entry.path();
        let Some(name) = cert_path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(base) = name.strip_suffix("-cert.pub") else {
            continue;
        };
        let key_path = dir.join(base);
        if let Some(before) = usable(&cert_path, &key_path, &bundle, principal, now)
            && best.as_ref().is_none_or(|b| before > b.2)
        {
            best = Some((key_path, cert_path, before));
        }
    }
    Ok(best)
}

/// `valid_before` of a certificate that passes every reuse check, else None.
fn usable(
    cert_path: &Path,
    key_path: &Path,
    bundle: &[PublicKey],
    principal: &str,
    now: u64,
) -> Option<u64> {
    let text = std::fs::read_to_string(cert_path).ok()?;
    let cert = Certificate::from_openssh(text.trim()).ok()?;
    let trusted = bundle.iter().any(|k| k.key_data() == cert.signature_key());
    let (_, default_extensions) = policy::effective_options(&[]);
    let extensions: Vec<(String, String)> = cert
        .extensions()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ok = trusted
        && cert.verify_signature().is_ok()
        && cert.valid_principals().iter().any(|p| p == principal)
        && cert.critical_options().is_empty()
        && extensions == default_extensions
        && cert.valid_after() <= now
        && cert.valid_before() >= now.saturating_add(MIN_REMAINING_SECS)
        && key_matches(key_path, &cert);
    ok.then(|| cert.valid_before())
}

/// The private key next to a certificate is the one it certifies.
fn key_matches(key_path: &Path, cert: &Certificate) -> bool {
    crate::fsx::read_small(key_path)
        .ok()
        .and_then(|b| ssh_key::PrivateKey::from_openssh(b).ok())
        .is_some_and(|k| k.public_key().key_data() == cert.public_key())
}

/// `ssh -i KEY -o CertificateFile=CERT -o IdentitiesOnly=yes [user options] -- DEST [COMMAND…]`.
/// IdentitiesOnly keeps agent keys from using up the server's MaxAuthTries before the certificate.
fn ssh_command(args: &ConnectArgs, key: &Path, cert: &Path) -> Command {
    let mut ssh = Command::new("ssh");
    ssh.arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}", cert.display()))
        .arg("-o")
        .arg("IdentitiesOnly=yes");
    if let Some(port) = args.port {
        ssh.arg("-p").arg(port.to_string());
    }
    for o in &args.ssh_options {
        ssh.arg("-o").arg(o);
    }
    if let Some(j) = &args.jump {
        ssh.arg("-J").arg(j);
    }
    if let Some(f) = &args.config {
        ssh.arg("-F").arg(f);
    }
    ssh.arg("--").arg(&args.destination).args(&args.command);
    ssh
}

fn user_ssh_config_exists() -> bool {
    std::env::var_os("HOME").is_some_and(|h| Path::new(&h).join(".ssh/config").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> ConnectArgs {
        let mut full = vec!["sshbreak", "connect"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full).unwrap().command {
            crate::cli::Command::Connect(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_principal_comes_from_the_destination_or_n() {
        assert_eq!(principal_for(&parse(&["root@web1"])).unwrap(), "root");
        assert_eq!(
            principal_for(&parse(&["ssh://ubuntu@web1:2222"])).unwrap(),
            "ubuntu"
        );
        assert_eq!(
            principal_for(&parse(&["-n", "carl", "root@web1"])).unwrap(),
            "carl"
        );
        assert!(principal_for(&parse(&["web1"])).is_err());
        assert!(principal_for(&parse(&["-oProxyCommand=sh -c id"])).is_err());
        assert!(principal_for(&parse(&["-n", "-x", "web1"])).is_err());
        assert!(principal_for(&parse(&["-n", "a,b", "web1"])).is_err());
    }

    #[test]
    fn options_come_before_the_separator_and_the_command_after_the_destination() {
        let args = parse(&[
            "-p",
            "2222",
            "-o",
            "ConnectTimeout=5",
            "-J",
            "bastion",
            "root@web1",
            "uptime",
            "-a",
        ]);
        let cmd = ssh_command(&args, Path::new("/k"), Path::new("/k-cert.pub"));
        let argv: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let sep = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(argv[sep + 1..], ["root@web1", "uptime", "-a"]);
        assert!(argv[..sep].contains(&"IdentitiesOnly=yes".to_string()));
        assert!(argv[..sep].contains(&"ConnectTimeout=5".to_string()));
    }
}
