//! Hardware security keys over USB HID, through `ctap-hid-fido2` — the only module that uses it.
//!
//! Orchestration and conversion only: which CTAP2 request answers which `SecurityKey` call, and
//! how the library's answers and errors become sshbreak's types. The byte-level conversions
//! (authData, DER, SEC1) live in `token/mod.rs` and are shared with the soft token.
//!
//! Three things about the library shape this file:
//! - It can panic (`HidApi::new().expect(..)` without HID access; unchecked indexing into a short
//!   authData) and it prints to stdout in a few places that no setting turns off (unknown response
//!   members, unknown extensions). Every call goes through [`contain`], which catches the panic,
//!   silences its message and diverts stdout to stderr for the duration of the call, so the
//!   results sshbreak prints on stdout stay clean.
//! - It reports errors as text, e.g. `response_status err = 0x31 CTAP2_ERR_PIN_INVALID   PIN
//!   Invalid.` (status names from its `ctapdef.rs`; unknown codes as bare `0x8`). [`map_error`] is
//!   the one place that turns that text into a [`TokenError`].
//! - Its HID reads block without a timeout and it gives up waiting for a touch only after 500
//!   keep-alive rounds (at least 50 s), reporting the keep-alive status byte as if it were a CTAP
//!   error (0x01/0x02). Keys time out on their own first (0x2F after ~30 s on a YubiKey), but see
//!   [`HidToken::call_touch`].

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use ctap_hid_fido2::fidokey::credential_management::credential_management_params::CredentialProtectionPolicy;
use ctap_hid_fido2::fidokey::make_credential::Extension as Mext;
use ctap_hid_fido2::fidokey::{
    CredentialSupportedKeyType, GetAssertionArgsBuilder, MakeCredentialArgsBuilder,
};
use ctap_hid_fido2::public_key_credential_user_entity::PublicKeyCredentialUserEntity;
use ctap_hid_fido2::{Cfg, FidoKeyHid, HidParam};

use super::*;

/// A FIDO HID device as enumeration shows it, for `sshbreak token list` and error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HidDevice {
    /// Platform path (`/dev/hidraw3` on Linux), usable as `--token hid:<path>`.
    pub path: String,
    /// USB product string; empty when the device does not report one.
    pub product: String,
}

impl HidDevice {
    fn label(&self) -> String {
        if self.product.is_empty() {
            self.path.clone()
        } else {
            format!("{} ({})", self.product, self.path)
        }
    }
}

/// Every FIDO device (HID usage page 0xF1D0) attached.
pub fn devices() -> Result<Vec<HidDevice>, TokenError> {
    let found = contain(ctap_hid_fido2::get_fidokey_devices).map_err(|panic| {
        TokenError::NoHidAccess(format!("cannot enumerate USB HID devices: {panic}"))
    })?;
    Ok(found
        .into_iter()
        .filter_map(|d| match d.param {
            HidParam::Path(path) => Some(HidDevice {
                path,
                product: d.product_string,
            }),
            // Only produced for a path that is not UTF-8; such a device cannot be named on the
            // command line either.
            HidParam::VidPid { .. } => None,
        })
        .collect())
}

/// One opened FIDO2 security key.
pub struct HidToken {
    device: FidoKeyHid,
    dev: HidDevice,
    /// getInfo `options` as read at open, to pick the credential-management command and to
    /// refuse what the key cannot do before asking for its PIN. `info()` reads them afresh.
    options: Vec<(String, bool)>,
}

/// The signature from an up=false lookup is thrown away, so its challenge does not matter.
const LOOKUP_CHALLENGE: &[u8] = b"sshbreak credential lookup";

/// The library gives up on a touch after >= 50 s and then reports the keep-alive status byte as
/// CTAP error 0x01/0x02. A genuine 0x01/0x02 comes back at once, so a late one is a timeout.
const LIBRARY_TOUCH_GIVE_UP: Duration = Duration::from_secs(45);

impl HidToken {
    /// Open the one FIDO device attached (`None`) or the one at `path`.
    pub fn open(path: Option<&str>) -> Result<HidToken, TokenError> {
        let mut all = devices()?;
        let dev = match path {
            None => match all.len() {
                0 => return Err(TokenError::NoDevice),
                1 => all.into_iter().next().ok_or(TokenError::NoDevice)?,
                _ => {
                    return Err(TokenError::MultipleDevices(
                        all.iter().map(HidDevice::label).collect(),
                    ));
                }
            },
            // Refuse anything that is not a FIDO device: the library's HID reads have no
            // timeout, so a CTAPHID_INIT sent to, say, a keyboard would hang forever.
            Some(path) => match all.iter().position(|d| d.path == path) {
                Some(i) => all.swap_remove(i),
                None => {
                    let listed: Vec<String> = all.iter().map(HidDevice::label).collect();
                    return Err(TokenError::Io(format!(
                        "{path} is not an attached FIDO security key (attached: {})",
                        if listed.is_empty() {
                            "none".to_string()
                        } else {
                            listed.join(", ")
                        }
                    )));
                }
            },
        };

        let mut cfg = Cfg::init()
            .with_enable_log(false)
            .with_keep_alive_msg_to_stderr(true);
        // sshbreak prints its own prompt (ui::touch_prompt) just before each call that needs one.
        cfg.enable_keep_alive_msg = false;
        let params = [HidParam::Path(dev.path.clone())];
        let device = match contain(|| FidoKeyHid::new(&params, &cfg)) {
            Ok(Ok(device)) => device,
            // The library drops hidapi's reason; a device that enumerates but does not open is
            // almost always a permissions problem (udev rules, container device cgroup).
            Ok(Err(_)) => {
                return Err(TokenError::NoHidAccess(format!(
                    "{} is attached but cannot be opened",
                    dev.path
                )));
            }
            Err(panic) => return Err(TokenError::NoHidAccess(panic)),
        };

        let mut token = HidToken {
            device,
            dev,
            options: Vec::new(),
        };
        let info = token.call(|d| d.get_info()).map_err(|e| match e {
            TokenError::Ctap { code: 0x01, .. } => {
                TokenError::Unsupported("FIDO2 (it answers only U2F/CTAP1)".into())
            }
            other => other,
        })?;
        let protocols = &info.pin_uv_auth_protocols;
        // Protocol 1 is the library's default and most exercised path; use 2 only where it is
        // the sole choice.
        if !protocols.is_empty() && !protocols.contains(&1) && protocols.contains(&2) {
            token.device.pin_protocol_version = 2;
        }
        token.options = info.options;
        // The library defaults to the FIDO_2_1_PRE credential-management command (0x41), which
        // keys that only speak FIDO 2.1 may not implement; they get 0x0A with a permission token.
        token.device.use_pre_credential_management = !(token.option("credMgmt") == Some(true)
            && token.option("pinUvAuthToken") == Some(true));
        Ok(token)
    }

    fn option(&self, name: &str) -> Option<bool> {
        self.options
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// One library call, contained and with its error mapped.
    fn call<T>(&self, f: impl FnOnce(&FidoKeyHid) -> anyhow::Result<T>) -> Result<T, TokenError> {
        match contain(|| f(&self.device)) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.with_retries(map_error(&format!("{err:#}")))),
            Err(panic) => Err(TokenError::Protocol(format!(
                "the key sent a response the FIDO library could not handle ({panic})"
            ))),
        }
    }

    /// A call that waits for a touch: prompt first, and recognise the library's own give-up.
    fn call_touch<T>(
        &self,
        f: impl FnOnce(&FidoKeyHid) -> anyhow::Result<T>,
    ) -> Result<T, TokenError> {
        crate::ui::touch_prompt();
        let started = Instant::now();
        self.call(f).map_err(|e| match e {
            TokenError::Ctap {
                code: 0x01 | 0x02, ..
            } if started.elapsed() >= LIBRARY_TOUCH_GIVE_UP => TokenError::UserActionTimeout,
            other => other,
        })
    }

    /// A wrong PIN is worth more with the number of tries left; asking costs no retry.
    fn with_retries(&self, err: TokenError) -> TokenError {
        if err != (TokenError::PinInvalid { retries_left: None }) {
            return err;
        }
        let retries_left = match contain(|| self.device.get_pin_retries()) {
            Ok(Ok(n)) => u32::try_from(n).ok(),
            _ => None,
        };
        TokenError::PinInvalid { retries_left }
    }

    /// One up=false getAssertion; an absent credential is an empty answer, not an error.
    fn lookup(
        &self,
        application: &str,
        credential_id: Option<&[u8]>,
        pin: Option<&Pin>,
    ) -> Result<Vec<FoundCredential>, TokenError> {
        let mut builder = GetAssertionArgsBuilder::new(application, LOOKUP_CHALLENGE).without_up();
        builder = match pin {
            Some(pin) => builder.pin(pin.expose()),
            None => builder.without_pin_and_uv(),
        };
        if let Some(id) = credential_id {
            builder = builder.add_credential_id(id);
        }
        let args = builder.build();
        let assertions = match self.call(|d| d.get_assertion_with_args(&args)) {
            Ok(list) => list,
            Err(TokenError::NoCredentials) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        assertions
            .into_iter()
            .map(|a| {
                Ok(FoundCredential {
                    credential_id: returned_credential_id(a.credential_id, credential_id)?,
                    user_id: Some(a.user.id).filter(|id| !id.is_empty()),
                })
            })
            .collect()
    }
}

/// CTAP lets a key omit the credential id when the allow list held exactly one.
fn returned_credential_id(returned: Vec<u8>, asked: Option<&[u8]>) -> Result<Vec<u8>, TokenError> {
    match (returned.is_empty(), asked) {
        (false, _) => Ok(returned),
        (true, Some(id)) => Ok(id.to_vec()),
        (true, None) => Err(TokenError::Protocol(
            "the key did not say which credential it used".into(),
        )),
    }
}

impl SecurityKey for HidToken {
    fn describe(&self) -> String {
        self.dev.label()
    }

    fn info(&self) -> Result<TokenInfo, TokenError> {
        let info = self.call(|d| d.get_info())?;
        let option = |name: &str| {
            info.options
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v)
        };
        let pin_set = option("clientPin");
        let pin_retries = if pin_set == Some(true) {
            self.call(|d| d.get_pin_retries())
                .ok()
                .and_then(|n| u32::try_from(n).ok())
        } else {
            None
        };
        Ok(TokenInfo {
            description: if self.dev.product.is_empty() {
                "FIDO security key".into()
            } else {
                self.dev.product.clone()
            },
            path: self.dev.path.clone(),
            aaguid: hex::encode(info.aaguid),
            versions: info.versions,
            // The library reports an absent firmwareVersion as 0; the encoding is vendor-specific
            // (YubiKey: 0x050406 = 5.4.6), so show it raw.
            firmware: (info.firmware_version != 0)
                .then(|| format!("{0} ({0:#08x})", info.firmware_version)),
            pin_set,
            pin_retries,
            // Also 0 when the key does not report remainingDiscoverableCredentials; "unknown" is
            // the honest reading, since claiming "full" would be wrong for most keys.
            remaining_resident: (info.remaining_discoverable_credentials != 0)
                .then_some(info.remaining_discoverable_credentials),
            cred_protect: info.extensions.iter().any(|e| e == "credProtect"),
            cred_mgmt: option("credMgmt") == Some(true)
                || option("credentialMgmtPreview") == Some(true),
        })
    }

    fn find_credentials(
        &self,
        application: &str,
        allow: &[&[u8]],
        pin: Option<&Pin>,
    ) -> Result<Vec<FoundCredential>, TokenError> {
        if allow.is_empty() {
            return self.lookup(application, None, pin);
        }
        // One id per request: with a list the key answers with only the first match, and a
        // single-id list stays within every key's maxCredentialCountInList.
        let mut found = Vec::new();
        for id in allow {
            found.extend(self.lookup(application, Some(id), pin)?);
        }
        Ok(found)
    }

    fn create_resident(&self, req: &CreateRequest, pin: &Pin) -> Result<CaCredential, TokenError> {
        // Level 2: not discoverable without the PIN, yet usable without it given the id (one
        // touch during an outage). Level 3 for --verify-required: the key itself refuses every
        // use without the PIN, so a stolen key plus a handle file cannot sign.
        let policy = if req.verify_required {
            CredentialProtectionPolicy::UserVerificationRequired
        } else {
            CredentialProtectionPolicy::UserVerificationOptionalWithCredentialIdList
        };
        // The attestation is not verified (the CA key's trust comes from enrolment, not from the
        // vendor), so the challenge only needs to be fresh.
        let mut challenge = [0u8; 32];
        getrandom::fill(&mut challenge)
            .map_err(|e| TokenError::Io(format!("no randomness for the challenge: {e}")))?;
        let user = PublicKeyCredentialUserEntity::new(
            Some(&req.user_id),
            Some(&req.user_name),
            Some(&req.user_name),
        );
        let args = MakeCredentialArgsBuilder::new(&req.application, &challenge)
            .key_type(CredentialSupportedKeyType::Ecdsa256)
            .user_entity(&user)
            .resident_key()
            .extensions(&[Mext::CredProtect(Some(policy))])
            .pin(pin.expose())
            .build();
        let att = self.call_touch(|d| d.make_credential_with_args(&args))?;

        let rp_id_hash: [u8; 32] = Sha256::digest(req.application.as_bytes()).into();
        if att.auth_data.get(..32) != Some(&rp_id_hash[..]) {
            return Err(TokenError::Protocol(format!(
                "the key created a credential for a different application than {}",
                req.application
            )));
        }
        let credential_id = att.credential_descriptor.id;
        if credential_id.is_empty() {
            return Err(TokenError::Protocol(
                "the key returned no credential id".into(),
            ));
        }
        // Despite its name, `der` holds the bare SEC1 point 04 ‖ x ‖ y built from the COSE key.
        let public_key_sec1 = att.credential_publickey.der;
        sk_key_data(&public_key_sec1, &req.application)?;
        Ok(CaCredential {
            application: req.application.clone(),
            user_id: req.user_id.clone(),
            user_name: req.user_name.clone(),
            credential_id,
            public_key_sec1,
            verify_required: req.verify_required,
        })
    }

    fn sign(
        &self,
        application: &str,
        credential_ids: &[&[u8]],
        message: &[u8],
        pin: Option<&Pin>,
    ) -> Result<Assertion, TokenError> {
        // The library sends SHA-256(challenge) as clientDataHash (fidokey get_assertion_command
        // Params::new -> util::create_clientdata_hash), which is exactly OpenSSH's
        // SHA-256(message): pass the message itself, not its hash.
        let mut builder = GetAssertionArgsBuilder::new(application, message);
        for id in credential_ids {
            builder = builder.add_credential_id(id);
        }
        builder = match pin {
            Some(pin) => builder.pin(pin.expose()),
            None => builder.without_pin_and_uv(),
        };
        let args = builder.build();
        let assertion = self
            .call_touch(|d| d.get_assertion_with_args(&args))?
            .into_iter()
            .next()
            .ok_or_else(|| TokenError::Protocol("the key returned no assertion".into()))?;
        let asked = match credential_ids {
            [one] => Some(*one),
            _ => None,
        };
        let credential_id = returned_credential_id(assertion.credential_id, asked)?;
        if !credential_ids.is_empty() && !credential_ids.contains(&credential_id.as_slice()) {
            return Err(TokenError::Protocol(
                "the key signed with a credential that was not asked for".into(),
            ));
        }
        // `auth_data` is the raw authenticatorData byte string as received (the library copies
        // it before parsing), so the flags byte is auth_data[32] with every bit the key set.
        parse_auth_data(&assertion.auth_data, application)?;
        Ok(Assertion {
            credential_id,
            auth_data: assertion.auth_data,
            signature_der: assertion.signature,
        })
    }

    fn list_resident(&self, pin: &Pin) -> Result<Vec<CaCredential>, TokenError> {
        if self.option("credMgmt") != Some(true)
            && self.option("credentialMgmtPreview") != Some(true)
        {
            return Err(TokenError::Unsupported(
                "credential management (listing resident credentials)".into(),
            ));
        }
        let rps = match self.call(|d| d.credential_management_enumerate_rps(Some(pin.expose()))) {
            Ok(rps) => rps,
            Err(TokenError::NoCredentials) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for rp in rps {
            let application = rp.public_key_credential_rp_entity.id;
            let creds = match self.call(|d| {
                d.credential_management_enumerate_credentials(Some(pin.expose()), &rp.rpid_hash)
            }) {
                Ok(creds) => creds,
                Err(TokenError::NoCredentials) => continue,
                Err(e) => return Err(e),
            };
            for cred in creds {
                let credential_id = cred.public_key_credential_descriptor.id;
                let public_key_sec1 = cred.public_key.der;
                // Skipped: the library's filler entry (empty id), credentials without an rp id,
                // and non-P-256 keys (Ed25519 passkeys) — none of them can be an sshbreak CA.
                if credential_id.is_empty()
                    || application.is_empty()
                    || sk_key_data(&public_key_sec1, &application).is_err()
                {
                    continue;
                }
                out.push(CaCredential {
                    application: application.clone(),
                    user_id: cred.public_key_credential_user_entity.id,
                    user_name: cred.public_key_credential_user_entity.name,
                    credential_id,
                    public_key_sec1,
                    verify_required: matches!(
                        cred.cred_protect,
                        CredentialProtectionPolicy::UserVerificationRequired
                    ),
                });
            }
        }
        Ok(out)
    }

    fn set_pin(&self, current: Option<&Pin>, new: &Pin) -> Result<(), TokenError> {
        match current {
            None => self.call(|d| d.set_new_pin(new.expose())),
            Some(current) => self.call(|d| d.change_pin(current.expose(), new.expose())),
        }
    }
}

/// The library's error text as a [`TokenError`]. `PinInvalid` comes back without a retry count;
/// the caller that still holds the device fills it in.
fn map_error(text: &str) -> TokenError {
    let lower = text.to_ascii_lowercase();
    // HID transport failures: "read err = 0xFE", "write error", "read error".
    if lower.contains("read err") || lower.contains("write error") {
        return TokenError::Io(format!("lost contact with the security key ({text})"));
    }
    let Some((code, name)) = ctap_status(text) else {
        return TokenError::Protocol(format!("FIDO library error: {text}"));
    };
    match code {
        0x31 => TokenError::PinInvalid { retries_left: None },
        0x32 => TokenError::PinBlocked,
        0x34 => TokenError::PinAuthBlocked,
        0x35 => TokenError::PinNotSet,
        // PIN_REQUIRED in CTAP 2.0, PUAT_REQUIRED in 2.1.
        0x36 => TokenError::PinRequired,
        0x37 => TokenError::PinPolicy("the key's PIN policy refused the new PIN".into()),
        0x2E => TokenError::NoCredentials,
        // USER_ACTION_TIMEOUT, and ACTION_TIMEOUT which some keys use for the same thing.
        0x2F | 0x3A => TokenError::UserActionTimeout,
        0x27 => TokenError::OperationDenied,
        0x28 => TokenError::KeyStoreFull,
        0x26 => TokenError::Unsupported("ES256 (P-256) credentials".into()),
        0x2B => TokenError::Unsupported("an option sshbreak requested".into()),
        0x16 => TokenError::Unsupported("an extension sshbreak requested".into()),
        _ => TokenError::Ctap { code, name },
    }
}

/// The first `0xNN` token in the text and the CTAP name that follows it, if any.
fn ctap_status(text: &str) -> Option<(u8, String)> {
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        let Some(digits) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) else {
            continue;
        };
        if digits.is_empty() || digits.len() > 2 {
            continue;
        }
        let Ok(code) = u8::from_str_radix(digits, 16) else {
            continue;
        };
        let name = words
            .next()
            .filter(|w| w.starts_with("CTAP"))
            .unwrap_or("UNKNOWN")
            .to_string();
        return Some((code, name));
    }
    None
}

/// Serialises library calls: the stdout diversion swaps a process-wide file descriptor.
static LIBRARY: Mutex<()> = Mutex::new(());
static QUIET_PANIC_HOOK: Once = Once::new();

thread_local! {
    static IN_LIBRARY: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a library call) so that a panic becomes `Err(message)` without printing a
/// backtrace hint, and so that whatever it prints to stdout lands on stderr.
fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // The hook is process-wide; this one stays silent only for the thread inside a library call,
    // so panics elsewhere (other tests, real bugs) still report as usual.
    QUIET_PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_LIBRARY.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let _serial = LIBRARY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    IN_LIBRARY.with(|c| c.set(true));
    let diverted = stdout_to_stderr::Diversion::start();
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(diverted);
    IN_LIBRARY.with(|c| c.set(false));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the FIDO library panicked".to_string())
    })
}

#[cfg(unix)]
mod stdout_to_stderr {
    use std::io::Write;
    use std::os::raw::c_int;

    // std offers no dup2; these come from the C library std already links.
    unsafe extern "C" {
        fn dup(fd: c_int) -> c_int;
        fn dup2(from: c_int, to: c_int) -> c_int;
        fn close(fd: c_int) -> c_int;
    }

    /// While alive, file descriptor 1 is a copy of 2; dropping it restores the original stdout.
    pub struct Diversion {
        saved: c_int,
    }

    impl Diversion {
        pub fn start() -> Option<Diversion> {
            // Anything sshbreak already wrote must reach the real stdout first.
            let _ = std::io::stdout().flush();
            // SAFETY: dup/dup2/close on the process's own standard descriptors, with every
            // return value checked; no memory is shared with the C side.
            unsafe {
                let saved = dup(1);
                if saved < 0 {
                    return None;
                }
                if dup2(2, 1) < 0 {
                    close(saved);
                    return None;
                }
                Some(Diversion { saved })
            }
        }
    }

    impl Drop for Diversion {
        fn drop(&mut self) {
            let _ = std::io::stdout().flush();
            // SAFETY: `saved` is the descriptor dup() returned in start() and is closed only here.
            unsafe {
                dup2(self.saved, 1);
                close(self.saved);
            }
        }
    }
}

#[cfg(not(unix))]
mod stdout_to_stderr {
    pub struct Diversion;
    impl Diversion {
        pub fn start() -> Option<Diversion> {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctap_errors_map_to_their_variants() {
        let cases = [
            (
                "response_status err = 0x31 CTAP2_ERR_PIN_INVALID   PIN Invalid.",
                TokenError::PinInvalid { retries_left: None },
            ),
            (
                "0x31 CTAP2_ERR_PIN_INVALID",
                TokenError::PinInvalid { retries_left: None },
            ),
            (
                "response_status err = 0x32 CTAP2_ERR_PIN_BLOCKED PIN Blocked.",
                TokenError::PinBlocked,
            ),
            (
                "response_status err = 0x34 CTAP2_ERR_PIN_AUTH_BLOCKED PIN authentication, pinAuth, blocked.Requires power recycle to reset.",
                TokenError::PinAuthBlocked,
            ),
            (
                "response_status err = 0x35 CTAP2_ERR_PIN_NOT_SET No PIN has been set.",
                TokenError::PinNotSet,
            ),
            (
                "response_status err = 0x36 CTAP2_ERR_PIN_REQUIRED  PIN is required for the selected operation.",
                TokenError::PinRequired,
            ),
            (
                "response_status err = 0x2E CTAP2_ERR_NO_CREDENTIALS    No valid credentials provided.",
                TokenError::NoCredentials,
            ),
            (
                "response_status err = 0x2F CTAP2_ERR_USER_ACTION_TIMEOUT   Timeout waiting for user interaction.",
                TokenError::UserActionTimeout,
            ),
            (
                "response_status err = 0x3A CTAP2_ERR_ACTION_TIMEOUT The current operation has timed out.",
                TokenError::UserActionTimeout,
            ),
            (
                "response_status err = 0x27 CTAP2_ERR_OPERATION_DENIED  Not authorized for requested operation.",
                TokenError::OperationDenied,
            ),
            (
                "response_status err = 0x28 CTAP2_ERR_KEY_STORE_FULL    Internal key storage is full.",
                TokenError::KeyStoreFull,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(map_error(text), want, "{text}");
        }
    }

    #[test]
    fn unsupported_and_unknown_statuses() {
        assert!(matches!(
            map_error(
                "response_status err = 0x2B CTAP2_ERR_UNSUPPORTED_OPTION Unsupported option."
            ),
            TokenError::Unsupported(_)
        ));
        assert!(matches!(
            map_error(
                "response_status err = 0x26 CTAP2_ERR_UNSUPPORTED_ALGORITHM Authenticator does not support requested algorithm."
            ),
            TokenError::Unsupported(_)
        ));
        assert_eq!(
            map_error(
                "response_status err = 0x33 CTAP2_ERR_PIN_AUTH_INVALID PIN authentication, pinAuth, verification failed."
            ),
            TokenError::Ctap {
                code: 0x33,
                name: "CTAP2_ERR_PIN_AUTH_INVALID".into()
            }
        );
        // The library formats codes it has no name for as `0x{:X}`, without zero padding.
        assert_eq!(
            map_error("response_status err = 0x8"),
            TokenError::Ctap {
                code: 0x08,
                name: "UNKNOWN".into()
            }
        );
    }

    #[test]
    fn transport_and_library_errors_keep_their_text() {
        for text in ["read err = 0xFE", "write error", "read error"] {
            match map_error(text) {
                TokenError::Io(msg) => assert!(msg.contains(text), "{msg}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        match map_error("Nonce verification failed") {
            TokenError::Protocol(msg) => assert!(msg.contains("Nonce verification failed")),
            other => panic!("{other:?}"),
        }
        // A U2F status word is not a one-byte CTAP code.
        assert!(matches!(
            map_error("response_status err = SW_WRONG_DATA (0x6A80): invalid key handle."),
            TokenError::Protocol(_)
        ));
    }

    #[test]
    fn a_panic_inside_the_library_becomes_an_error() {
        assert_eq!(contain(|| 7), Ok(7));
        let err = contain(|| -> u8 { panic!("Failed to create HidAPI instance") }).unwrap_err();
        assert_eq!(err, "Failed to create HidAPI instance");
        let err = contain(|| -> u8 { panic!("{}", String::from("formatted")) }).unwrap_err();
        assert_eq!(err, "formatted");
    }

    #[test]
    fn the_credential_id_may_be_omitted_only_for_a_single_id_list() {
        assert_eq!(returned_credential_id(vec![1], None), Ok(vec![1]));
        assert_eq!(returned_credential_id(vec![], Some(&[2][..])), Ok(vec![2]));
        assert!(returned_credential_id(vec![], None).is_err());
    }

    #[test]
    fn open_without_a_key_is_a_clean_error() {
        let result = HidToken::open(None);
        let has_hidraw = std::fs::read_dir("/dev")
            .map(|dir| {
                dir.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("hidraw"))
            })
            .unwrap_or(false);
        match result {
            Err(TokenError::NoDevice | TokenError::NoHidAccess(_)) => {}
            Err(other) if has_hidraw => eprintln!("open(None) with HID devices present: {other}"),
            Ok(token) if has_hidraw => eprintln!("a key is attached: {}", token.describe()),
            Err(other) => panic!("unexpected error without HID devices: {other:?}"),
            Ok(token) => panic!("opened {} without any /dev/hidraw*", token.describe()),
        }
        assert!(HidToken::open(Some("/dev/null")).is_err());
    }
}
