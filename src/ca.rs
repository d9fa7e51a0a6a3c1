//! The CA as it exists on disk — handle files (OpenSSH "private key" files that hold only the
//! credential id) and the trust bundle hosts install — and the signer that turns a touch of the
//! security key into an `ssh_key::Signature`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ssh_key::private::{KeypairData, SkEcdsaSha2NistP256};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, Signature};

use crate::fsx;
use crate::token::{
    self, AuthData, CaCredential, Pin, SSH_SK_RESIDENT_KEY, SSH_SK_USER_PRESENCE_REQD,
    SSH_SK_USER_VERIFICATION_REQD, SecurityKey, TokenError,
};

/// Name of the trust bundle in the home: every CA public key hosts should trust, one a line.
pub const BUNDLE_FILE: &str = "trusted-ca.pub";
/// Folder of handle files in the home.
pub const CA_DIR: &str = "ca";

pub fn bundle_path(home: &Path) -> PathBuf {
    home.join(BUNDLE_FILE)
}

pub fn ca_dir(home: &Path) -> PathBuf {
    home.join(CA_DIR)
}

/// A CA handle file: which credential on which application, and how signatures must be made.
#[derive(Clone, Debug)]
pub struct CaHandle {
    pub name: String,
    pub path: PathBuf,
    pub application: String,
    pub credential_id: Vec<u8>,
    /// OpenSSH sk flags (0x01 touch, 0x04 PIN, 0x20 resident).
    pub flags: u8,
    pub public: PublicKey,
}

impl CaHandle {
    pub fn verify_required(&self) -> bool {
        self.flags & SSH_SK_USER_VERIFICATION_REQD != 0
    }

    pub fn fingerprint(&self) -> String {
        self.public.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Parse a handle file. Only sk-ecdsa handles are CA handles.
    pub fn read(path: &Path) -> Result<CaHandle> {
        let text = fsx::read_small(path)?;
        let key = PrivateKey::from_openssh(&text)
            .with_context(|| format!("{} is not an OpenSSH key file", path.display()))?;
        let KeypairData::SkEcdsaSha2NistP256(sk) = key.key_data() else {
            bail!(
                "{} is a {} key, not an sshbreak CA handle (sk-ecdsa-sha2-nistp256@openssh.com)",
                path.display(),
                key.algorithm()
            );
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(CaHandle {
            name,
            path: path.to_path_buf(),
            application: sk.public().application().to_string(),
            credential_id: sk.key_handle().to_vec(),
            flags: sk.flags(),
            public: key.public_key().clone(),
        })
    }
}

/// The OpenSSH handle file for a credential, as `ssh-keygen -K` would write it. The PIN flag comes
/// from the credential itself (credProtect 3), so a recovered handle keeps it.
pub fn handle_file(cred: &CaCredential, comment: &str) -> Result<Vec<u8>> {
    let KeyData::SkEcdsaSha2NistP256(public) = cred.key_data()? else {
        bail!("internal: a CA credential is not an sk-ecdsa key");
    };
    let mut flags = SSH_SK_USER_PRESENCE_REQD | SSH_SK_RESIDENT_KEY;
    if cred.verify_required {
        flags |= SSH_SK_USER_VERIFICATION_REQD;
    }
    let sk = SkEcdsaSha2NistP256::new(public, flags, cred.credential_id.clone())
        .context("the credential id is too long for an OpenSSH handle")?;
    let key = PrivateKey::new(KeypairData::SkEcdsaSha2NistP256(sk), comment)
        .context("cannot build the handle file")?;
    Ok(key
        .to_openssh(LineEnding::LF)
        .context("cannot encode the handle file")?
        .as_bytes()
        .to_vec())
}

/// Every CA handle in the home, sorted by name (primary first).
pub fn load_handles(home: &Path) -> Result<Vec<CaHandle>> {
    let dir = ca_dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut handles = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || name.ends_with(".pub") || name.ends_with(".lock") {
            continue;
        }
        // A stray file (a README, an editor backup) must not stop an issue during an outage.
        match CaHandle::read(&path) {
            Ok(h) => handles.push(h),
            Err(e) => crate::ui::warn(format!("skipping {}: {e:#}", path.display())),
        }
    }
    handles.sort_by(|a, b| (a.name != "primary", &a.name).cmp(&(b.name != "primary", &b.name)));
    Ok(handles)
}

/// A name for a CA in the home: letters, digits, `-`, `_`, `.`; not starting with a dot.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && !name.ends_with(".pub")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid CA name `{name}`: use letters, digits, `-`, `_` and `.` (at most 64)");
    }
    Ok(())
}

/// Read a trust bundle: one OpenSSH public key a line; blank lines and `#` comments allowed.
pub fn read_bundle(path: &Path) -> Result<Vec<PublicKey>> {
    let bytes = fsx::read_small(path)?;
    parse_bundle(&bytes).with_context(|| format!("in {}", path.display()))
}

/// Parse bundle text (see [`read_bundle`]).
pub fn parse_bundle(bytes: &[u8]) -> Result<Vec<PublicKey>> {
    let text = std::str::from_utf8(bytes).context("not UTF-8 text")?;
    let mut keys = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line)
            .with_context(|| format!("line {}: not an OpenSSH public key", no + 1))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Add `key` to the bundle unless a line already has the same key (comments do not count).
/// Returns whether the bundle changed. Serialised against concurrent `init-ca` runs.
pub fn add_to_bundle(path: &Path, key: &PublicKey) -> Result<bool> {
    let _lock = fsx::lock(path)?;
    let existing = if path.exists() {
        fsx::read_small(path)?
    } else {
        Vec::new()
    };
    let keys = parse_bundle(&existing).with_context(|| format!("in {}", path.display()))?;
    if keys.iter().any(|k| k.key_data() == key.key_data()) {
        return Ok(false);
    }
    let mut text = existing;
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(key.to_openssh()?.as_bytes());
    text.push(b'\n');
    fsx::write_atomic(path, &text, fsx::PUBLIC)?;
    Ok(true)
}

/// Remove every line holding `key` from the bundle. Returns whether the bundle changed.
pub fn remove_from_bundle(path: &Path, key: &KeyData) -> Result<bool> {
    let _lock = fsx::lock(path)?;
    if !path.exists() {
        return Ok(false);
    }
    let existing = fsx::read_small(path)?;
    let text = String::from_utf8(existing.clone()).context("the bundle is not UTF-8")?;
    let kept: String = text
        .lines()
        .filter(|l| PublicKey::from_openssh(l.trim()).map_or(true, |k| k.key_data() != key))
        .map(|l| format!("{l}\n"))
        .collect();
    if kept.as_bytes() == existing.as_slice() {
        return Ok(false);
    }
    fsx::write_atomic(path, kept.as_bytes(), fsx::PUBLIC)?;
    Ok(true)
}

/// Signs with the security key: one touch per signature. It implements `signature::Signer`, so
/// `ssh_key::certificate::Builder::sign` can use it directly; the parsed authenticator data of the
/// last signature is kept for the audit log.
pub struct TokenSigner<'a> {
    token: &'a dyn SecurityKey,
    handle: &'a CaHandle,
    pin: Option<Pin>,
    last: RefCell<Option<AuthData>>,
    error: RefCell<Option<TokenError>>,
}

impl<'a> TokenSigner<'a> {
    pub fn new(token: &'a dyn SecurityKey, handle: &'a CaHandle, pin: Option<Pin>) -> Self {
        TokenSigner {
            token,
            handle,
            pin,
            last: RefCell::new(None),
            error: RefCell::new(None),
        }
    }

    /// Authenticator data of the last signature made.
    pub fn last_auth_data(&self) -> Option<AuthData> {
        *self.last.borrow()
    }

    /// The token error behind a failed signature (the `signature::Error` carries no detail).
    pub fn take_error(&self) -> Option<TokenError> {
        self.error.borrow_mut().take()
    }

    fn sign_checked(&self, msg: &[u8]) -> Result<Signature, TokenError> {
        let h = self.handle;
        let assertion = self.token.sign(
            &h.application,
            &[h.credential_id.as_slice()],
            msg,
            self.pin.as_ref(),
        )?;
        let (sig, auth) = token::assertion_to_ssh_signature(&assertion, &h.application)?;
        // sshd never checks the flags of a CA signature; this is the only place that does.
        if !auth.user_present() {
            return Err(TokenError::Protocol(
                "the key signed without user presence (no touch); refusing to issue the certificate"
                    .into(),
            ));
        }
        if h.verify_required() && !auth.user_verified() {
            return Err(TokenError::Protocol(
                "the CA requires PIN verification but the signature is not user-verified".into(),
            ));
        }
        *self.last.borrow_mut() = Some(auth);
        Ok(sig)
    }
}

impl signature::Signer<Signature> for TokenSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<Signature, signature::Error> {
        self.sign_checked(msg).map_err(|e| {
            *self.error.borrow_mut() = Some(e);
            signature::Error::new()
        })
    }
}

impl From<&TokenSigner<'_>> for KeyData {
    fn from(signer: &TokenSigner<'_>) -> KeyData {
        signer.handle.public.key_data().clone()
    }
}

/// Find which of the CA handles the plugged-in key holds, without a touch. With one handle there is
/// nothing to choose and the key is not asked. A PIN-protected CA (credProtect 3) is invisible to
/// the key without the PIN, so its lookup is made with `pin`.
pub fn select_handle<'h>(
    token: &dyn SecurityKey,
    handles: &'h [CaHandle],
    pin: Option<&Pin>,
) -> Result<&'h CaHandle> {
    match handles {
        [] => bail!("no CA handle in the home; run `sshbreak init-ca` (or `init-ca --recover`)"),
        [only] => Ok(only),
        _ => {
            for h in handles {
                let pin = pin.filter(|_| h.verify_required());
                let found =
                    token.find_credentials(&h.application, &[h.credential_id.as_slice()], pin)?;
                if !found.is_empty() {
                    return Ok(h);
                }
            }
            Err(TokenError::NoCredentials.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSL/MLNcGQY0xCcp/3+/zG+pss00O+5M4h7NpWQ9yry a";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpDIg5yyWxtXDmBWdj2nYKIpm2FhJwZGye2fAMU7c/e b";

    #[test]
    fn bundle_adds_each_key_once_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(BUNDLE_FILE);
        let a = PublicKey::from_openssh(KEY_A).unwrap();
        let mut a_other_comment = a.clone();
        a_other_comment.set_comment("renamed");
        let b = PublicKey::from_openssh(KEY_B).unwrap();
        assert!(add_to_bundle(&p, &a).unwrap());
        assert!(!add_to_bundle(&p, &a_other_comment).unwrap());
        assert!(add_to_bundle(&p, &b).unwrap());
        assert_eq!(read_bundle(&p).unwrap().len(), 2);
        assert!(remove_from_bundle(&p, a.key_data()).unwrap());
        let left = read_bundle(&p).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key_data(), b.key_data());
    }

    #[test]
    fn a_bad_bundle_line_is_named() {
        let err = parse_bundle(b"# comment\n\nssh-ed25519 AAAA broken\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
    }

    #[test]
    fn names_are_file_safe() {
        assert!(check_name("primary").is_ok());
        assert!(check_name("backup-2").is_ok());
        for bad in ["", ".hidden", "a/b", "x.pub", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
