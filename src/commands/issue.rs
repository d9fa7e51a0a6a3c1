//! `sshbreak issue`: a fresh key pair (or someone's public key) and a short-lived certificate for
//! it, signed with one touch of the security key. `connect`, `drill` and `demo` issue through the
//! same [`issue`] function.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey};

use super::{Ctx, hinted, out, usage};
use crate::audit::{self, CounterCheck};
use crate::ca::{self, TokenSigner};
use crate::cli::{CertArgs, IssueArgs};
use crate::policy::{self, CertRequest};
use crate::{fsx, timefmt, ui};

/// Folder of issued keys and certificates in the home.
pub const CERTS_DIR: &str = "certs";

/// What to issue: the parsed command line of `issue`, or what `connect`/`drill` ask for.
#[derive(Clone, Debug)]
pub struct IssueParams {
    pub principals: Vec<String>,
    pub cert: CertArgs,
    /// Certify this public key instead of generating a key pair.
    pub pubkey: Option<PathBuf>,
    /// Base path of the output files.
    pub output: Option<PathBuf>,
    pub force: bool,
}

/// What was issued and where it was written.
#[derive(Clone, Debug, Serialize)]
pub struct Issued {
    /// The private key (None with --pubkey).
    pub key: Option<PathBuf>,
    pub public_key: PathBuf,
    pub certificate: PathBuf,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: String,
    pub valid_before: String,
    /// Seconds since the epoch, for scripts.
    pub valid_after_unix: u64,
    pub valid_before_unix: u64,
    pub ca: String,
    pub ca_fingerprint: String,
    pub counter: u32,
}

pub fn run(args: &IssueArgs, ctx: &Ctx) -> Result<ExitCode> {
    let params = IssueParams {
        principals: policy::parse_principals(&args.principals)
            .map_err(|e| usage(format!("{e:#}")))?,
        cert: args.cert.clone(),
        pubkey: args.pubkey.clone(),
        output: args.output.clone(),
        force: args.force,
    };
    let issued = issue(ctx, &params)?;
    if args.json {
        out(format!("{}\n", serde_json::to_string_pretty(&issued)?))?;
    } else {
        let mut text = String::new();
        if let Some(k) = &issued.key {
            text += &format!("{}\n", k.display());
            text += &format!("{}\n", issued.public_key.display());
        }
        text += &format!("{}\n", issued.certificate.display());
        out(text)?;
        ui::status(format!(
            "Certificate for {} valid until {} (serial {}), signed by CA `{}`.\n\
             Use it: ssh -i {} -o CertificateFile={} -o IdentitiesOnly=yes USER@HOST",
            issued.principals.join(","),
            issued.valid_before,
            issued.serial,
            issued.ca,
            issued
                .key
                .as_deref()
                .unwrap_or(issued.public_key.as_path())
                .display(),
            issued.certificate.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The current time as Unix seconds, taken once per certificate.
pub fn unix_now() -> Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// Issue one certificate: check the request, sign it with the key (one touch), verify it, then
/// write the files and the audit entry. Nothing is written when any step fails.
pub fn issue(ctx: &Ctx, p: &IssueParams) -> Result<Issued> {
    let now = unix_now()?;
    let req = request(p, now)?;

    // Everything that can be checked without the key is checked before the touch.
    let handles = ca::load_handles(&ctx.home)?;
    if handles.is_empty() {
        return Err(hinted(
            format!("no CA in {}", ctx.home.display()),
            "run `sshbreak init-ca` (or `sshbreak init-ca --recover` with the CA key plugged in)",
        ));
    }
    let bundle = ca::read_bundle(&ca::bundle_path(&ctx.home)).map_err(|e| {
        hinted(
            format!("{e:#}"),
            "the trust bundle is missing: run `sshbreak init-ca --recover`",
        )
    })?;
    // Only CAs that hosts were told to trust may sign.
    let handles: Vec<_> = handles
        .into_iter()
        .filter(|h| bundle.iter().any(|k| k.key_data() == h.public.key_data()))
        .collect();
    if handles.is_empty() {
        bail!("none of the CA handles is in the trust bundle; run `sshbreak init-ca --recover`");
    }

    let (subject, private) = subject_key(p)?;
    let paths = OutputPaths::choose(ctx, p, &req, now)?;
    paths.check_free(p.force)?;

    let token = ctx.open_token()?;
    // A PIN-protected CA needs the PIN even to be found on the key, so ask before the lookup.
    let pin = if handles.iter().any(|h| h.verify_required()) {
        Some(ui::read_pin(&token.describe())?)
    } else {
        None
    };
    let handle = ca::select_handle(token.as_ref(), &handles, pin.as_ref())?;
    let pin = pin.filter(|_| handle.verify_required());
    let signer = TokenSigner::new(token.as_ref(), handle, pin);
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    let mut builder = policy::builder(&req, subject.key_data().clone(), nonce)?;
    builder.comment(req.key_id.clone())?;
    let cert = builder
        .sign(&signer)
        .map_err(|e| match signer.take_error() {
            Some(token_err) => anyhow::Error::from(token_err),
            None => anyhow::anyhow!("cannot sign the certificate: {e}"),
        })?;
    let auth = signer
        .last_auth_data()
        .context("internal: the signer returned no authenticator data")?;
    verify_issued(&cert, &req, &subject, &handle.public)?;

    paths.write(private.as_ref(), &subject, &cert, p.force)?;

    let issued = Issued {
        key: private.as_ref().map(|_| paths.key.clone()),
        public_key: paths.public.clone(),
        certificate: paths.cert.clone(),
        serial: req.serial,
        key_id: req.key_id.clone(),
        principals: req.principals.clone(),
        valid_after: timefmt::iso(req.validity.after),
        valid_before: timefmt::iso(req.validity.before),
        valid_after_unix: req.validity.after,
        valid_before_unix: req.validity.before,
        ca: handle.name.clone(),
        ca_fingerprint: handle.fingerprint(),
        counter: auth.counter,
    };
    let entry = audit::Entry {
        time: timefmt::iso(now),
        serial: req.serial,
        key_id: req.key_id.clone(),
        principals: req.principals.clone(),
        valid_after: issued.valid_after.clone(),
        valid_before: issued.valid_before.clone(),
        ca_fingerprint: issued.ca_fingerprint.clone(),
        ca_name: handle.name.clone(),
        cert_key_fingerprint: subject.fingerprint(HashAlg::Sha256).to_string(),
        flags: auth.flags,
        counter: auth.counter,
        reason: p.cert.reason.clone(),
        operator: operator(),
        certificate: paths.cert.display().to_string(),
    };
    match audit::append(&ctx.home, &entry) {
        Ok(CounterCheck::Ok) => {}
        Ok(CounterCheck::NotIncreasing { last }) => ui::warn(format!(
            "SECURITY: the CA key's signature counter ({}) is not above the last one recorded ({last}). \
             The key may have been cloned or a signature replayed: check the key's custody and the audit log.",
            auth.counter
        )),
        // The certificate exists; a log failure must not hide it, but must be visible.
        Err(e) => ui::warn(format!("could not write the audit log: {e:#}")),
    }
    Ok(issued)
}

/// Turn the parameters into a checked certificate request.
fn request(p: &IssueParams, now: u64) -> Result<CertRequest> {
    let backdate = policy::parse_duration(&p.cert.backdate)
        .map_err(|e| usage(format!("--backdate: {e:#}")))?;
    let validity = policy::parse_validity(&p.cert.validity, now, backdate)
        .map_err(|e| usage(format!("{e:#}")))?;
    policy::check_validity(&validity, now, p.cert.allow_long_validity)
        .map_err(|e| usage(format!("{e:#}")))?;
    let options = p
        .cert
        .options
        .iter()
        .map(|o| policy::parse_option(o))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| usage(format!("{e:#}")))?;
    policy::check_options(&options).map_err(|e| usage(format!("{e:#}")))?;
    let key_id = match &p.cert.key_id {
        Some(id) => id.clone(),
        None => policy::default_key_id(
            &p.principals,
            &local_user(),
            &hostname(),
            now,
            p.cert.reason.as_deref(),
        ),
    };
    policy::check_key_id(&key_id).map_err(|e| usage(format!("{e:#}")))?;
    Ok(CertRequest {
        principals: p.principals.clone(),
        validity,
        key_id,
        serial: random_serial()?,
        options,
    })
}

/// A random, non-zero 64-bit serial from the OS CSPRNG.
fn random_serial() -> Result<u64> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
        let serial = u64::from_be_bytes(b);
        if serial != 0 {
            return Ok(serial);
        }
    }
}

/// The subject: someone's public key, or a fresh key pair.
fn subject_key(p: &IssueParams) -> Result<(PublicKey, Option<PrivateKey>)> {
    if let Some(path) = &p.pubkey {
        let bytes = fsx::read_small(path)?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not a public key file", path.display()))?;
        let key = PublicKey::from_openssh(text.trim()).with_context(|| {
            format!(
                "{} is not an OpenSSH public key (expected one line like `ssh-ed25519 AAAA… comment`)",
                path.display()
            )
        })?;
        return Ok((key, None));
    }
    let alg = match p.cert.key_type.as_str() {
        "ecdsa" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        _ => Algorithm::Ed25519,
    };
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let mut key = PrivateKey::random(&mut rng, alg).context("cannot generate a key pair")?;
    key.set_comment(format!("sshbreak {}@{}", local_user(), hostname()));
    Ok((key.public_key().clone(), Some(key)))
}

/// Re-check what was signed against what was asked, in release builds too: a certificate is only
/// written after its signature verifies against the CA and every field is exactly the request's.
fn verify_issued(
    cert: &Certificate,
    req: &CertRequest,
    subject: &PublicKey,
    ca_key: &PublicKey,
) -> Result<()> {
    let fp = ca_key.fingerprint(HashAlg::Sha256);
    cert.validate_at(cert.valid_after(), [&fp]).context(
        "the signed certificate does not verify against the CA key; nothing was written",
    )?;
    let pairs = |m: &ssh_key::certificate::OptionsMap| -> Vec<(String, String)> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let (critical, extensions) = policy::effective_options(&req.options);
    let same = cert.cert_type() == ssh_key::certificate::CertType::User
        && cert.public_key() == subject.key_data()
        && cert.valid_principals() == req.principals.as_slice()
        && cert.valid_after() == req.validity.after
        && cert.valid_before() == req.validity.before
        && cert.serial() == req.serial
        && cert.key_id() == req.key_id
        && pairs(cert.critical_options()) == critical
        && pairs(cert.extensions()) == extensions;
    if !same {
        bail!("internal: the signed certificate differs from the request; nothing was written");
    }
    Ok(())
}

/// Where the key, its public half and the certificate go.
struct OutputPaths {
    key: PathBuf,
    public: PathBuf,
    cert: PathBuf,
    /// Only the certificate is written (--pubkey).
    cert_only: bool,
}

impl OutputPaths {
    fn choose(ctx: &Ctx, p: &IssueParams, req: &CertRequest, now: u64) -> Result<OutputPaths> {
        let base = match (&p.output, &p.pubkey) {
            (Some(o), _) => o.clone(),
            // ssh-keygen's convention: id_ed25519.pub → id_ed25519-cert.pub
            (None, Some(pubkey)) => {
                let s = pubkey.to_string_lossy();
                PathBuf::from(s.strip_suffix(".pub").unwrap_or(&s).to_string())
            }
            (None, None) => {
                let dir = ctx.home.join(CERTS_DIR);
                ctx.ensure_home()?;
                fsx::ensure_private_dir(&dir)?;
                let first = req.principals.first().map(String::as_str).unwrap_or("cert");
                let safe: String = first
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(32)
                    .collect();
                let stamp = timefmt::compact(now);
                let plain = dir.join(format!("{safe}-{stamp}"));
                if plain.exists() || with_suffix(&plain, "-cert.pub").exists() {
                    dir.join(format!("{safe}-{stamp}-{:016x}", req.serial))
                } else {
                    plain
                }
            }
        };
        if base.as_os_str().is_empty() || base.file_name().is_none() {
            return Err(usage("-o needs a file path"));
        }
        Ok(OutputPaths {
            public: with_suffix(&base, ".pub"),
            cert: with_suffix(&base, "-cert.pub"),
            key: base,
            cert_only: p.pubkey.is_some(),
        })
    }

    fn all(&self) -> Vec<&Path> {
        if self.cert_only {
            vec![&self.cert]
        } else {
            vec![&self.key, &self.public, &self.cert]
        }
    }

    fn check_free(&self, force: bool) -> Result<()> {
        for path in self.all() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(usage(format!("{} does not exist", dir.display())));
            }
            if !force && path.exists() {
                return Err(hinted(
                    format!("{} already exists; nothing was issued", path.display()),
                    "choose another -o path, or add --force to overwrite",
                ));
            }
        }
        Ok(())
    }

    /// Write everything or nothing: on a failure the files written so far are removed.
    fn write(
        &self,
        private: Option<&PrivateKey>,
        public: &PublicKey,
        cert: &Certificate,
        force: bool,
    ) -> Result<()> {
        let mut written: Vec<&Path> = Vec::new();
        let result = (|| -> Result<()> {
            if let Some(key) = private {
                let pem = key.to_openssh(LineEnding::LF)?;
                fsx::write_file(&self.key, pem.as_bytes(), fsx::PRIVATE, force)?;
                written.push(&self.key);
                let line = public.to_openssh()? + "\n";
                fsx::write_file(&self.public, line.as_bytes(), fsx::PUBLIC, force)?;
                written.push(&self.public);
            }
            let line = cert.to_openssh()? + "\n";
            fsx::write_file(&self.cert, line.as_bytes(), fsx::PUBLIC, force)?;
            Ok(())
        })();
        if result.is_err() {
            for path in written {
                let _ = std::fs::remove_file(path);
            }
        }
        result
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The local user, for the key id and the audit log: `$USER`/`$LOGNAME`, else the passwd entry of
/// this process's uid (cron and containers often set neither variable).
pub fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into())
}

fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid).then(|| name.to_string())
    })
}

/// This machine's name, for the key id and the audit log.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn operator() -> String {
    format!("{}@{}", local_user(), hostname())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_random_and_non_zero() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert!(a != 0 && b != 0 && a != b);
    }
}
