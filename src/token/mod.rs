//! The security-key boundary: one trait that both the hardware token (`hid`) and the software
//! CTAP2 authenticator (`soft`) implement, the values that cross it, and the pure conversions from
//! what an authenticator returns (authData, DER signature, SEC1 point) to what OpenSSH expects.
//!
//! The conversions live here rather than in `hid.rs` because the soft token returns exactly the
//! bytes a hardware key returns, so every certificate the test suite signs goes through them.

pub mod hid;
pub mod soft;

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use ssh_key::public::{KeyData, SkEcdsaSha2NistP256};

/// Authenticator-data flag: the user touched the key (user presence).
pub const FLAG_UP: u8 = 0x01;
/// Authenticator-data flag: the user was verified (PIN or biometric).
pub const FLAG_UV: u8 = 0x04;
/// Authenticator-data flag: attested credential data follows (makeCredential only).
pub const FLAG_AT: u8 = 0x40;
/// Authenticator-data flag: extension data follows.
pub const FLAG_ED: u8 = 0x80;

/// OpenSSH handle-file flag: signatures need a touch.
pub const SSH_SK_USER_PRESENCE_REQD: u8 = 0x01;
/// OpenSSH handle-file flag: signatures need the PIN (verify-required).
pub const SSH_SK_USER_VERIFICATION_REQD: u8 = 0x04;
/// OpenSSH handle-file flag: the credential is resident (discoverable) on the key.
pub const SSH_SK_RESIDENT_KEY: u8 = 0x20;

/// The user id every sshbreak CA credential carries. A resident credential is replaced when one
/// with the same rp id and user id is created, so a fixed, distinctive value keeps sshbreak from
/// clobbering anything `ssh-keygen -O resident` made (that uses an all-zero user id).
pub const CA_USER_ID: &[u8] = b"sshbreak-ca";
/// The user name stored with the CA credential (shown by credential-management tools).
pub const CA_USER_NAME: &str = "sshbreak";
/// Default FIDO application (rp id) of the CA credential.
pub const DEFAULT_APPLICATION: &str = "ssh:sshbreak";

/// A PIN held in memory only as long as needed. Never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Checks what the host can check before spending one of the key's PIN retries: CTAP2 wants
    /// at least 4 Unicode code points and at most 63 bytes of UTF-8.
    pub fn new(pin: impl Into<String>) -> Result<Pin, TokenError> {
        let pin = pin.into();
        if pin.chars().count() < 4 {
            return Err(TokenError::PinPolicy(
                "the PIN is shorter than 4 characters".into(),
            ));
        }
        if pin.len() > 63 {
            return Err(TokenError::PinPolicy(
                "the PIN is longer than 63 bytes".into(),
            ));
        }
        Ok(Pin(pin))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocation is freed.
        // SAFETY-free variant: replace each byte through a mutable Vec view.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// Which token the user selected with `--token` / `SSHBREAK_TOKEN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSpec {
    /// The one FIDO HID device attached (an error if there are none or several).
    Hid,
    /// A specific HID device by its platform path (as `sshbreak token list` prints it).
    HidPath(String),
    /// A software authenticator stored in this file.
    Soft(PathBuf),
}

impl std::str::FromStr for TokenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "hid" {
            Ok(TokenSpec::Hid)
        } else if let Some(path) = s.strip_prefix("hid:") {
            if path.is_empty() {
                return Err("`hid:` needs a device path, e.g. hid:/dev/hidraw3".into());
            }
            Ok(TokenSpec::HidPath(path.to_string()))
        } else if let Some(path) = s.strip_prefix("soft:") {
            if path.is_empty() {
                return Err("`soft:` needs a file, e.g. soft:/tmp/token.json".into());
            }
            Ok(TokenSpec::Soft(PathBuf::from(path)))
        } else {
            Err(format!(
                "unknown token `{s}`: use `hid`, `hid:<device path>` or `soft:<file>`"
            ))
        }
    }
}

impl fmt::Display for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSpec::Hid => f.write_str("hid"),
            TokenSpec::HidPath(p) => write!(f, "hid:{p}"),
            TokenSpec::Soft(p) => write!(f, "soft:{}", p.display()),
        }
    }
}

/// Open the selected token. The soft token announces itself once on stderr.
pub fn open(spec: &TokenSpec) -> Result<Box<dyn SecurityKey>, TokenError> {
    match spec {
        TokenSpec::Hid => Ok(Box::new(hid::HidToken::open(None)?)),
        TokenSpec::HidPath(p) => Ok(Box::new(hid::HidToken::open(Some(p))?)),
        TokenSpec::Soft(p) => {
            crate::ui::warn_once_soft_token(p);
            Ok(Box::new(soft::SoftToken::open(p)?))
        }
    }
}

/// What a token says about itself (authenticatorGetInfo, plus what the platform knows).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TokenInfo {
    /// Human description: product name or "software token".
    pub description: String,
    /// Where it is: HID device path or soft-token file.
    pub path: String,
    /// AAGUID as 32 hex digits.
    pub aaguid: String,
    pub versions: Vec<String>,
    pub firmware: Option<String>,
    /// `Some(true)` when a PIN is set (getInfo option `clientPin`), `None` when PINs are unsupported.
    pub pin_set: Option<bool>,
    pub pin_retries: Option<u32>,
    /// Remaining discoverable-credential slots, where the key reports them.
    pub remaining_resident: Option<u32>,
    pub cred_protect: bool,
    pub cred_mgmt: bool,
}

/// What `create_resident` is asked to make.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub application: String,
    pub user_id: Vec<u8>,
    pub user_name: String,
    /// Make every use of the credential need the PIN: credProtect level 3, enforced by the key
    /// (and handle flag 0x04, so OpenSSH tools ask for the PIN too). Otherwise level 2.
    pub verify_required: bool,
}

/// A CA credential as the key holds it: enough to write an OpenSSH handle file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCredential {
    pub application: String,
    pub user_id: Vec<u8>,
    pub user_name: String,
    pub credential_id: Vec<u8>,
    /// 65-byte uncompressed SEC1 point.
    pub public_key_sec1: Vec<u8>,
    /// credProtect level 3: the key itself refuses to use the credential without the PIN.
    pub verify_required: bool,
}

impl CaCredential {
    /// The credential's public key as an OpenSSH `sk-ecdsa-sha2-nistp256@openssh.com` key.
    pub fn key_data(&self) -> Result<KeyData, TokenError> {
        sk_key_data(&self.public_key_sec1, &self.application)
    }
}

/// A credential the key admits to holding, found without a touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundCredential {
    pub credential_id: Vec<u8>,
    /// Present when the key returned it (discoverable credentials only).
    pub user_id: Option<Vec<u8>>,
}

/// One signature as an authenticator returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub credential_id: Vec<u8>,
    /// Raw authenticator data: SHA-256(rp id) ‖ flags ‖ counter (37 bytes for a signature).
    pub auth_data: Vec<u8>,
    /// ASN.1 DER ECDSA signature over authData ‖ clientDataHash.
    pub signature_der: Vec<u8>,
}

/// authenticator data split into its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub counter: u32,
}

impl AuthData {
    pub fn user_present(&self) -> bool {
        self.flags & FLAG_UP != 0
    }
    pub fn user_verified(&self) -> bool {
        self.flags & FLAG_UV != 0
    }
}

/// Parse the authenticator data of an assertion. OpenSSH transmits only flags and counter and
/// rebuilds the rest, so anything beyond the fixed 37 bytes (extensions) would make the signature
/// unverifiable by sshd: refuse it here rather than write a certificate no host accepts.
pub fn parse_auth_data(auth_data: &[u8], application: &str) -> Result<AuthData, TokenError> {
    if auth_data.len() != 37 {
        return Err(TokenError::Protocol(format!(
            "authenticator data is {} bytes, expected 37 (extensions are not supported)",
            auth_data.len()
        )));
    }
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&auth_data[..32]);
    let expected: [u8; 32] = Sha256::digest(application.as_bytes()).into();
    if rp_id_hash != expected {
        return Err(TokenError::Protocol(format!(
            "the key signed for a different application than {application}"
        )));
    }
    let flags = auth_data[32];
    if flags & (FLAG_AT | FLAG_ED) != 0 {
        return Err(TokenError::Protocol(format!(
            "unexpected authenticator-data flags {flags:#04x} in a signature"
        )));
    }
    let counter = u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
    Ok(AuthData {
        rp_id_hash,
        flags,
        counter,
    })
}

/// Decode an ASN.1 DER ECDSA-P256 signature into its fixed-size (r, s) halves. The `ecdsa` crate's
/// strict DER parser rejects non-minimal encodings, negative or zero integers and trailing bytes.
pub fn der_to_rs(der: &[u8]) -> Result<([u8; 32], [u8; 32]), TokenError> {
    let sig = p256::ecdsa::Signature::from_der(der)
        .map_err(|_| TokenError::Protocol("the key returned a malformed DER signature".into()))?;
    let (r, s) = sig.split_bytes();
    Ok((r.into(), s.into()))
}

/// SSH mpint body of an unsigned big-endian integer: no leading zeros, plus one 0x00 when the top
/// bit is set so it does not read as negative.
fn mpint_bytes(unsigned: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let start = unsigned
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(unsigned.len());
        &unsigned[start..]
    };
    let mut out = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The signature data `ssh_key::Signature::new` takes for `sk-ecdsa-sha2-nistp256@openssh.com`:
/// `mpint r ‖ mpint s ‖ byte flags ‖ uint32 counter`. On the wire ssh-key wraps r and s in the
/// inner string OpenSSH expects.
pub fn ssh_signature_body(r: &[u8; 32], s: &[u8; 32], flags: u8, counter: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(79);
    put_string(&mut out, &mpint_bytes(r));
    put_string(&mut out, &mpint_bytes(s));
    out.push(flags);
    out.extend_from_slice(&counter.to_be_bytes());
    out
}

/// An assertion turned into an OpenSSH signature, with its parsed authenticator data.
pub fn assertion_to_ssh_signature(
    assertion: &Assertion,
    application: &str,
) -> Result<(ssh_key::Signature, AuthData), TokenError> {
    let auth = parse_auth_data(&assertion.auth_data, application)?;
    let (r, s) = der_to_rs(&assertion.signature_der)?;
    let body = ssh_signature_body(&r, &s, auth.flags, auth.counter);
    let sig = ssh_key::Signature::new(ssh_key::Algorithm::SkEcdsaSha2NistP256, body)
        .map_err(|e| TokenError::Protocol(format!("cannot encode the signature: {e}")))?;
    Ok((sig, auth))
}

/// A SEC1 point from the key as an OpenSSH sk-ecdsa public key for `application`.
pub fn sk_key_data(sec1: &[u8], application: &str) -> Result<KeyData, TokenError> {
    if sec1.len() != 65 || sec1[0] != 0x04 {
        return Err(TokenError::Protocol(format!(
            "the key returned a {}-byte public key, expected a 65-byte uncompressed P-256 point",
            sec1.len()
        )));
    }
    // Reject points that are not on the curve now, not at the first signature check.
    p256::PublicKey::from_sec1_bytes(sec1)
        .map_err(|_| TokenError::Protocol("the key returned an invalid P-256 point".into()))?;
    let point = ssh_key::sec1::EncodedPoint::<ssh_key::sec1::consts::U32>::from_bytes(sec1)
        .map_err(|_| TokenError::Protocol("the key returned an invalid P-256 point".into()))?;
    Ok(KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(
        point,
        application.to_string(),
    )))
}

/// Everything that can go wrong at the token, each with what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    NoDevice,
    MultipleDevices(Vec<String>),
    NoHidAccess(String),
    PinInvalid {
        retries_left: Option<u32>,
    },
    PinBlocked,
    PinAuthBlocked,
    PinRequired,
    PinNotSet,
    PinPolicy(String),
    NoCredentials,
    UserActionTimeout,
    OperationDenied,
    KeyStoreFull,
    Unsupported(String),
    /// The key answered with something sshbreak cannot use.
    Protocol(String),
    /// A CTAP status code without a dedicated variant.
    Ctap {
        code: u8,
        name: String,
    },
    /// Local I/O around the token (soft-token file, device open).
    Io(String),
}

impl TokenError {
    /// The next step for the person at the keyboard.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            TokenError::NoDevice => {
                "plug in the security key (or pick another token with --token / SSHBREAK_TOKEN)"
            }
            TokenError::MultipleDevices(_) => {
                "unplug the other keys, or choose one with --token hid:<path> (see `sshbreak token list`)"
            }
            TokenError::NoHidAccess(_) => {
                "run on a machine with USB access to the key; in a container pass the hidraw device through, or check udev permissions on /dev/hidraw*"
            }
            TokenError::PinInvalid { .. } => "check the PIN and try again",
            TokenError::PinBlocked => {
                "the PIN is blocked; only a FIDO reset (which erases every credential, including the CA) unblocks it — use a backup CA key"
            }
            TokenError::PinAuthBlocked => "remove the key, re-insert it, and try again",
            TokenError::PinRequired => "this operation needs the key's PIN",
            TokenError::PinNotSet => "set a PIN first with `sshbreak token set-pin`",
            TokenError::PinPolicy(_) => "a FIDO PIN is 4 to 63 characters",
            TokenError::NoCredentials => {
                "this key does not hold the CA: plug in the key you ran `sshbreak init-ca` on (or a backup), or run `sshbreak init-ca --recover` on it"
            }
            TokenError::UserActionTimeout => "touch the key when it blinks; run the command again",
            TokenError::OperationDenied => {
                "the request was declined on the key; run the command again and confirm it"
            }
            TokenError::KeyStoreFull => {
                "the key has no free resident-credential slots; delete one with your vendor's tool (e.g. `ykman fido credentials delete`)"
            }
            _ => return None,
        })
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::NoDevice => f.write_str("no FIDO security key found"),
            TokenError::MultipleDevices(paths) => write!(
                f,
                "{} FIDO security keys are plugged in ({})",
                paths.len(),
                paths.join(", ")
            ),
            TokenError::NoHidAccess(why) => write!(f, "no access to USB HID devices ({why})"),
            TokenError::PinInvalid {
                retries_left: Some(n),
            } => {
                let tail = if *n == 0 {
                    " — the PIN is now blocked".to_string()
                } else if *n <= 3 {
                    format!(" — {n} more wrong PINs block the key")
                } else {
                    String::new()
                };
                write!(
                    f,
                    "wrong PIN ({n} {} left){tail}",
                    if *n == 1 { "try" } else { "tries" }
                )
            }
            TokenError::PinInvalid { retries_left: None } => f.write_str("wrong PIN"),
            TokenError::PinBlocked => f.write_str("the key's PIN is blocked (no tries left)"),
            TokenError::PinAuthBlocked => f.write_str(
                "three wrong PINs in a row: the key refuses PINs until it is re-inserted",
            ),
            TokenError::PinRequired => f.write_str("the key requires its PIN for this"),
            TokenError::PinNotSet => f.write_str("the key has no PIN set"),
            TokenError::PinPolicy(why) => write!(f, "PIN not accepted: {why}"),
            TokenError::NoCredentials => f.write_str("the CA credential is not on this key"),
            TokenError::UserActionTimeout => f.write_str("no touch within 30 s"),
            TokenError::OperationDenied => f.write_str("the key denied the operation"),
            TokenError::KeyStoreFull => f.write_str("the key's credential storage is full"),
            TokenError::Unsupported(what) => write!(f, "the key does not support {what}"),
            TokenError::Protocol(what) => f.write_str(what),
            TokenError::Ctap { code, name } => {
                write!(f, "the key returned error {code:#04x} {name}")
            }
            TokenError::Io(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for TokenError {}

/// The boundary every token implements. `&self` everywhere: the HID library's device methods
/// take `&self`, and the soft token locks its file per call.
pub trait SecurityKey {
    /// Short description for messages and bundle comments ("YubiKey 5 NFC", "soft token x.json").
    fn describe(&self) -> String;

    /// authenticatorGetInfo and friends. No touch, no PIN.
    fn info(&self) -> Result<TokenInfo, TokenError>;

    /// Which of the given credentials (or, with an empty list, which discoverable credentials for
    /// `application`) the key holds — a getAssertion with user presence off: no touch. With a PIN
    /// the lookup is user-verified, which also reveals credProtect-2 credentials without a list.
    fn find_credentials(
        &self,
        application: &str,
        allow: &[&[u8]],
        pin: Option<&Pin>,
    ) -> Result<Vec<FoundCredential>, TokenError>;

    /// Create a discoverable ES256 credential (credProtect 2, or 3 with `verify_required`). Needs
    /// the PIN.
    fn create_resident(&self, req: &CreateRequest, pin: &Pin) -> Result<CaCredential, TokenError>;

    /// Sign `message` (one touch): the key signs authData ‖ SHA-256(message) with whichever of
    /// `credential_ids` it holds. With a PIN the signature is user-verified.
    fn sign(
        &self,
        application: &str,
        credential_ids: &[&[u8]],
        message: &[u8],
        pin: Option<&Pin>,
    ) -> Result<Assertion, TokenError>;

    /// Every discoverable credential on the key (credential management; needs the PIN).
    fn list_resident(&self, pin: &Pin) -> Result<Vec<CaCredential>, TokenError>;

    /// Set the first PIN (`current` = None) or change it.
    fn set_pin(&self, current: Option<&Pin>, new: &Pin) -> Result<(), TokenError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_spec_parses_the_three_forms() {
        assert_eq!("hid".parse::<TokenSpec>(), Ok(TokenSpec::Hid));
        assert_eq!(
            "hid:/dev/hidraw3".parse::<TokenSpec>(),
            Ok(TokenSpec::HidPath("/dev/hidraw3".into()))
        );
        assert_eq!(
            "soft:/tmp/t.json".parse::<TokenSpec>(),
            Ok(TokenSpec::Soft("/tmp/t.json".into()))
        );
        assert!("soft:".parse::<TokenSpec>().is_err());
        assert!("yubikey".parse::<TokenSpec>().is_err());
    }

    #[test]
    fn pin_length_is_checked_before_the_key_sees_it() {
        assert!(Pin::new("123").is_err());
        assert!(Pin::new("1234").is_ok());
        assert!(Pin::new("ü".repeat(4)).is_ok()); // 4 code points, 8 bytes
        assert!(Pin::new("x".repeat(63)).is_ok());
        assert!(Pin::new("x".repeat(64)).is_err());
        assert_eq!(
            format!("{:?}", Pin::new("secret1").unwrap()),
            "Pin(<redacted>)"
        );
    }

    #[test]
    fn mpint_adds_a_pad_byte_only_for_a_set_top_bit() {
        let mut v = [0u8; 32];
        v[31] = 0x7f;
        assert_eq!(mpint_bytes(&v), vec![0x7f]);
        v[0] = 0x80;
        assert_eq!(mpint_bytes(&v)[..2], [0x00, 0x80]);
        assert_eq!(mpint_bytes(&v).len(), 33);
    }

    #[test]
    fn der_rejects_garbage_without_panicking() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x00],
            &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01],
            &[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01], // negative r
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01], // non-minimal r
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01], // r = 0
        ] {
            assert!(der_to_rs(bad).is_err(), "{bad:02x?}");
        }
        let (r, s) = der_to_rs(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x07]).unwrap();
        assert_eq!((r[31], s[31]), (5, 7));
        assert!(r[..31].iter().all(|&b| b == 0));
    }

    #[test]
    fn auth_data_must_be_37_bytes_for_the_right_application() {
        let mut ad = Sha256::digest(b"ssh:sshbreak").to_vec();
        ad.push(FLAG_UP | FLAG_UV);
        ad.extend_from_slice(&258u32.to_be_bytes());
        let parsed = parse_auth_data(&ad, "ssh:sshbreak").unwrap();
        assert!(parsed.user_present() && parsed.user_verified());
        assert_eq!(parsed.counter, 258);
        assert!(parse_auth_data(&ad, "ssh:other").is_err());
        let mut long = ad.clone();
        long.push(0);
        assert!(parse_auth_data(&long, "ssh:sshbreak").is_err());
        assert!(parse_auth_data(&ad[..36], "ssh:sshbreak").is_err());
    }

    #[test]
    fn wrong_pin_message_counts_down() {
        let e = TokenError::PinInvalid {
            retries_left: Some(2),
        };
        assert_eq!(
            e.to_string(),
            "wrong PIN (2 tries left) — 2 more wrong PINs block the key"
        );
    }
}
