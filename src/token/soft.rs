//! A software CTAP2 authenticator kept in one JSON file, for tests and `sshbreak demo`.
//!
//! It is a stand-in for hardware, so it reproduces what a hardware key does that matters here:
//! resident credentials keyed by (rp id, user id) — creating one with the same pair silently
//! replaces the old one; ES256 keys; authenticator data `SHA-256(rp id) ‖ flags ‖ counter`; DER
//! signatures over `authData ‖ SHA-256(message)`; one global signature counter that strictly
//! increases and is persisted (under a lock, atomically) before a signature is handed out;
//! credProtect levels 2 (a credential is not discoverable without user verification unless its id
//! is given) and 3 (not usable at all without user verification); a PIN with 8 retries, blocked at 0, and three wrong PINs in a row refused until "re-plug"
//! (a new process); resident credentials need the PIN to be created, as on a YubiKey 5.
//!
//! Test knob: with `SSHBREAK_SOFT_TOKEN_NO_TOUCH=1` the token signs without the user-presence flag,
//! as a key asked with `up=false` would, so the refusal path can be tested.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use p256::ecdsa::{Signature, SigningKey, signature::Signer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Assertion, CaCredential, CreateRequest, FLAG_UP, FLAG_UV, FoundCredential, Pin, SecurityKey,
    TokenError, TokenInfo,
};
use crate::fsx;

/// Environment variable that makes the soft token sign without the user-presence flag.
pub const NO_TOUCH_ENV: &str = "SSHBREAK_SOFT_TOKEN_NO_TOUCH";

const PIN_RETRIES: u8 = 8;
const MAX_CONSECUTIVE_WRONG: u8 = 3;
/// Discoverable-credential slots, as on a YubiKey 5 (firmware 5.2–5.6).
const RESIDENT_SLOTS: usize = 25;
const FORMAT: u32 = 1;
/// credProtect level 2: userVerificationOptionalWithCredentialIDList.
const CRED_PROTECT_UV_OPTIONAL_WITH_LIST: u8 = 2;
/// credProtect level 3: userVerificationRequired.
const CRED_PROTECT_UV_REQUIRED: u8 = 3;

#[derive(Serialize, Deserialize, Clone, Debug)]
struct State {
    format: u32,
    aaguid: String,
    counter: u32,
    /// LEFT(SHA-256(PIN), 16) in hex, as CTAP2 stores it.
    pin_hash: Option<String>,
    pin_retries: u8,
    credentials: Vec<StoredCredential>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct StoredCredential {
    rp_id: String,
    user_id: String,
    user_name: String,
    credential_id: String,
    private_key: String,
    cred_protect: u8,
}

impl StoredCredential {
    fn signing_key(&self) -> Result<SigningKey, TokenError> {
        let bytes =
            hex::decode(&self.private_key).map_err(|_| corrupt("a private key is not hex"))?;
        SigningKey::from_slice(&bytes).map_err(|_| corrupt("a private key is invalid"))
    }

    fn to_ca_credential(&self) -> Result<CaCredential, TokenError> {
        let point = self
            .signing_key()?
            .verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        Ok(CaCredential {
            application: self.rp_id.clone(),
            user_id: hex::decode(&self.user_id).map_err(|_| corrupt("a user id is not hex"))?,
            user_name: self.user_name.clone(),
            credential_id: self.cred_id()?,
            public_key_sec1: point,
            verify_required: self.cred_protect >= CRED_PROTECT_UV_REQUIRED,
        })
    }

    fn cred_id(&self) -> Result<Vec<u8>, TokenError> {
        hex::decode(&self.credential_id).map_err(|_| corrupt("a credential id is not hex"))
    }
}

fn corrupt(what: &str) -> TokenError {
    TokenError::Io(format!("the soft token file is corrupt: {what}"))
}

/// A software authenticator backed by a file.
pub struct SoftToken {
    path: PathBuf,
    /// Wrong PINs in a row in this process; three make the key refuse PINs until re-plugged,
    /// which for a file-backed key means until the next process.
    consecutive_wrong: Cell<u8>,
}

impl SoftToken {
    /// Open the token in `path`, creating it (0600) on first use.
    pub fn open(path: &Path) -> Result<SoftToken, TokenError> {
        if !path.exists() {
            let mut aaguid = [0u8; 16];
            random(&mut aaguid)?;
            let state = State {
                format: FORMAT,
                aaguid: hex::encode(aaguid),
                counter: 0,
                pin_hash: None,
                pin_retries: PIN_RETRIES,
                credentials: Vec::new(),
            };
            let text =
                serde_json::to_vec_pretty(&state).map_err(|e| TokenError::Io(e.to_string()))?;
            if let Err(e) = fsx::write_new(path, &text, fsx::PRIVATE) {
                // Another process may have created it first; that one is as good as ours.
                if !path.exists() {
                    return Err(TokenError::Io(format!(
                        "cannot create the soft token {}: {e:#}",
                        path.display()
                    )));
                }
            }
        }
        Ok(SoftToken {
            path: path.to_path_buf(),
            consecutive_wrong: Cell::new(0),
        })
    }

    /// Run `f` on the state under the file lock. The state is written back (atomically) whenever it
    /// changed, even when `f` then fails: a wrong PIN must cost a retry. An unchanged state is not
    /// rewritten, so a read-only operation leaves the file byte-identical.
    fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        let _lock = fsx::lock(&self.path).map_err(|e| TokenError::Io(format!("{e:#}")))?;
        let bytes = fsx::read_small(&self.path).map_err(|e| TokenError::Io(format!("{e:#}")))?;
        let mut state: State = serde_json::from_slice(&bytes).map_err(|e| {
            TokenError::Io(format!(
                "the soft token file {} is corrupt: {e}",
                self.path.display()
            ))
        })?;
        if state.format != FORMAT {
            return Err(corrupt("unknown format version"));
        }
        let result = f(&mut state);
        let text = serde_json::to_vec_pretty(&state).map_err(|e| TokenError::Io(e.to_string()))?;
        if text != bytes {
            fsx::write_atomic(&self.path, &text, fsx::PRIVATE)
                .map_err(|e| TokenError::Io(format!("{e:#}")))?;
        }
        result
    }

    /// CTAP2 PIN check: costs a retry when wrong, resets the retries when right.
    fn check_pin(&self, state: &mut State, pin: &Pin) -> Result<(), TokenError> {
        let Some(stored) = &state.pin_hash else {
            return Err(TokenError::PinNotSet);
        };
        if state.pin_retries == 0 {
            return Err(TokenError::PinBlocked);
        }
        if self.consecutive_wrong.get() >= MAX_CONSECUTIVE_WRONG {
            return Err(TokenError::PinAuthBlocked);
        }
        if *stored == pin_hash(pin) {
            state.pin_retries = PIN_RETRIES;
            self.consecutive_wrong.set(0);
            return Ok(());
        }
        state.pin_retries -= 1;
        self.consecutive_wrong.set(self.consecutive_wrong.get() + 1);
        if state.pin_retries == 0 {
            Err(TokenError::PinBlocked)
        } else if self.consecutive_wrong.get() >= MAX_CONSECUTIVE_WRONG {
            Err(TokenError::PinAuthBlocked)
        } else {
            Err(TokenError::PinInvalid {
                retries_left: Some(u32::from(state.pin_retries)),
            })
        }
    }

    /// The credentials a getAssertion would consider, in the order a key picks them.
    fn matching<'s>(
        state: &'s State,
        application: &str,
        allow: &[&[u8]],
        verified: bool,
    ) -> Vec<&'s StoredCredential> {
        // credProtect 3 hides a credential from every request that is not user-verified.
        let for_rp = state
            .credentials
            .iter()
            .filter(|c| c.rp_id == application)
            .filter(|c| verified || c.cred_protect < CRED_PROTECT_UV_REQUIRED);
        if allow.is_empty() {
            // Discovery: credProtect 2 hides a credential unless the user was verified.
            for_rp
                .filter(|c| verified || c.cred_protect < CRED_PROTECT_UV_OPTIONAL_WITH_LIST)
                .collect()
        } else {
            let for_rp: Vec<_> = for_rp.collect();
            allow
                .iter()
                .filter_map(|id| {
                    for_rp
                        .iter()
                        .find(|c| c.cred_id().is_ok_and(|cid| cid == *id))
                        .copied()
                })
                .collect()
        }
    }

    /// A getAssertion: verifies the PIN if given, bumps the counter, signs.
    fn get_assertion(
        &self,
        application: &str,
        allow: &[&[u8]],
        message: &[u8],
        pin: Option<&Pin>,
        user_presence: bool,
    ) -> Result<(Assertion, Option<Vec<u8>>), TokenError> {
        self.with_state(|state| {
            if let Some(pin) = pin
                && let Err(e) = self.check_pin(state, pin)
            {
                return Err(e);
            }
            let verified = pin.is_some();
            let Some(cred) = Self::matching(state, application, allow, verified)
                .first()
                .map(|c| (*c).clone())
            else {
                return Err(TokenError::NoCredentials);
            };
            let Some(counter) = state.counter.checked_add(1) else {
                return Err(TokenError::Protocol(
                    "the signature counter is exhausted".into(),
                ));
            };
            state.counter = counter;
            let mut flags = 0;
            if user_presence {
                flags |= FLAG_UP;
            }
            if verified {
                flags |= FLAG_UV;
            }
            {
                let key = cred.signing_key()?;
                let mut auth_data = Sha256::digest(application.as_bytes()).to_vec();
                auth_data.push(flags);
                auth_data.extend_from_slice(&counter.to_be_bytes());
                let mut signed = auth_data.clone();
                signed.extend_from_slice(&Sha256::digest(message));
                let sig: Signature = key.sign(&signed);
                let user_id = hex::decode(&cred.user_id).ok();
                Ok((
                    Assertion {
                        credential_id: cred.cred_id()?,
                        auth_data,
                        signature_der: sig.to_der().as_bytes().to_vec(),
                    },
                    user_id,
                ))
            }
        })
    }
}

impl SecurityKey for SoftToken {
    fn describe(&self) -> String {
        format!("soft token {}", self.path.display())
    }

    fn info(&self) -> Result<TokenInfo, TokenError> {
        self.with_state(|state| {
            let info = TokenInfo {
                description: "sshbreak software token (not a hardware key)".into(),
                path: self.path.display().to_string(),
                aaguid: state.aaguid.clone(),
                versions: vec!["FIDO_2_0".into(), "FIDO_2_1".into()],
                firmware: Some(format!("sshbreak-soft {FORMAT}")),
                pin_set: Some(state.pin_hash.is_some()),
                pin_retries: Some(u32::from(state.pin_retries)),
                remaining_resident: Some(
                    RESIDENT_SLOTS.saturating_sub(state.credentials.len()) as u32
                ),
                cred_protect: true,
                cred_mgmt: true,
            };
            Ok(info)
        })
    }

    fn find_credentials(
        &self,
        application: &str,
        allow: &[&[u8]],
        pin: Option<&Pin>,
    ) -> Result<Vec<FoundCredential>, TokenError> {
        // A no-touch lookup is a getAssertion with up=false; like a real key it still counts.
        let verified = pin.is_some();
        match self.get_assertion(application, allow, b"", pin, false) {
            Ok(_) => {}
            Err(TokenError::NoCredentials) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        self.with_state(|state| {
            Self::matching(state, application, allow, verified)
                .into_iter()
                .map(|c| {
                    Ok(FoundCredential {
                        credential_id: c.cred_id()?,
                        user_id: hex::decode(&c.user_id).ok(),
                    })
                })
                .collect()
        })
    }

    fn create_resident(&self, req: &CreateRequest, pin: &Pin) -> Result<CaCredential, TokenError> {
        let mut secret = [0u8; 32];
        let key = loop {
            random(&mut secret)?;
            if let Ok(k) = SigningKey::from_slice(&secret) {
                break k;
            }
        };
        let mut cred_id = [0u8; 48];
        random(&mut cred_id)?;
        let stored = StoredCredential {
            rp_id: req.application.clone(),
            user_id: hex::encode(&req.user_id),
            user_name: req.user_name.clone(),
            credential_id: hex::encode(cred_id),
            private_key: hex::encode(key.to_bytes()),
            cred_protect: if req.verify_required {
                CRED_PROTECT_UV_REQUIRED
            } else {
                CRED_PROTECT_UV_OPTIONAL_WITH_LIST
            },
        };
        self.with_state(|state| {
            self.check_pin(state, pin)?;
            // Same rp id and user id: the old credential is overwritten, as on real keys.
            state
                .credentials
                .retain(|c| !(c.rp_id == stored.rp_id && c.user_id == stored.user_id));
            if state.credentials.len() >= RESIDENT_SLOTS {
                return Err(TokenError::KeyStoreFull);
            }
            state.counter = state.counter.saturating_add(1);
            state.credentials.push(stored.clone());
            stored.to_ca_credential()
        })
    }

    fn sign(
        &self,
        application: &str,
        credential_ids: &[&[u8]],
        message: &[u8],
        pin: Option<&Pin>,
    ) -> Result<Assertion, TokenError> {
        let touch = std::env::var_os(NO_TOUCH_ENV).is_none_or(|v| v.is_empty() || v == "0");
        self.get_assertion(application, credential_ids, message, pin, touch)
            .map(|(a, _)| a)
    }

    fn list_resident(&self, pin: &Pin) -> Result<Vec<CaCredential>, TokenError> {
        self.with_state(|state| {
            self.check_pin(state, pin)?;
            state
                .credentials
                .iter()
                .map(StoredCredential::to_ca_credential)
                .collect()
        })
    }

    fn set_pin(&self, current: Option<&Pin>, new: &Pin) -> Result<(), TokenError> {
        self.with_state(|state| {
            match (current, state.pin_hash.is_some()) {
                (None, true) => {
                    return Err(TokenError::Protocol(
                        "the key already has a PIN; changing it needs the current PIN".into(),
                    ));
                }
                (Some(_), false) => return Err(TokenError::PinNotSet),
                (Some(cur), true) => {
                    self.check_pin(state, cur)?;
                }
                (None, false) => {}
            }
            state.pin_hash = Some(pin_hash(new));
            state.pin_retries = PIN_RETRIES;
            Ok(())
        })
    }
}

fn pin_hash(pin: &Pin) -> String {
    hex::encode(&Sha256::digest(pin.expose().as_bytes())[..16])
}

fn random(buf: &mut [u8]) -> Result<(), TokenError> {
    getrandom::fill(buf).map_err(|e| TokenError::Io(format!("no randomness from the OS: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{CA_USER_ID, assertion_to_ssh_signature, parse_auth_data};

    const APP: &str = "ssh:sshbreak";

    fn pin(s: &str) -> Pin {
        Pin::new(s).unwrap()
    }

    fn token_with_pin(dir: &Path) -> SoftToken {
        let t = SoftToken::open(&dir.join("token.json")).unwrap();
        t.set_pin(None, &pin("123456")).unwrap();
        t
    }

    fn request(user_id: &[u8]) -> CreateRequest {
        CreateRequest {
            application: APP.into(),
            user_id: user_id.to_vec(),
            user_name: "sshbreak".into(),
            verify_required: false,
        }
    }

    #[test]
    fn the_file_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        SoftToken::open(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn auth_data_is_rp_hash_flags_counter_and_the_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let cred = t
            .create_resident(&request(CA_USER_ID), &pin("123456"))
            .unwrap();
        let a = t
            .sign(APP, &[&cred.credential_id], b"message", None)
            .unwrap();
        assert_eq!(a.auth_data.len(), 37);
        assert_eq!(
            &a.auth_data[..32],
            Sha256::digest(APP.as_bytes()).as_slice()
        );
        assert_eq!(a.auth_data[32], FLAG_UP);
        let parsed = parse_auth_data(&a.auth_data, APP).unwrap();
        assert!(parsed.user_present() && !parsed.user_verified());
        // The DER signature covers authData ‖ SHA-256(message) under the credential's key.
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&cred.public_key_sec1).unwrap();
        let mut signed = a.auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(b"message"));
        let sig = p256::ecdsa::Signature::from_der(&a.signature_der).unwrap();
        use p256::ecdsa::signature::Verifier;
        vk.verify(&signed, &sig).unwrap();
        // ...and converts to an OpenSSH signature that ssh-key verifies over the message.
        let (ssh_sig, _) = assertion_to_ssh_signature(&a, APP).unwrap();
        let kd = cred.key_data().unwrap();
        kd.verify(b"message", &ssh_sig).unwrap();
        assert!(kd.verify(b"other message", &ssh_sig).is_err());
        // With the PIN the signature is user-verified.
        let b = t
            .sign(APP, &[&cred.credential_id], b"m", Some(&pin("123456")))
            .unwrap();
        assert_eq!(b.auth_data[32], FLAG_UP | FLAG_UV);
    }

    #[test]
    fn counter_strictly_increases_across_signatures_and_reopenings() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let cred = t
            .create_resident(&request(CA_USER_ID), &pin("123456"))
            .unwrap();
        let mut last = 0;
        for _ in 0..5 {
            let t = SoftToken::open(&dir.path().join("token.json")).unwrap();
            let a = t.sign(APP, &[&cred.credential_id], b"x", None).unwrap();
            let c = parse_auth_data(&a.auth_data, APP).unwrap().counter;
            assert!(c > last, "{c} after {last}");
            last = c;
        }
    }

    /// Run by `counter_is_unique_across_concurrent_processes` in a child process.
    #[test]
    #[ignore = "helper: run as a child process by the concurrency test"]
    fn child_signs_many() {
        let Some(path) = std::env::var_os("SOFT_TOKEN_CHILD") else {
            return;
        };
        let cred_id = hex::decode(std::env::var("SOFT_TOKEN_CRED").unwrap()).unwrap();
        let t = SoftToken::open(Path::new(&path)).unwrap();
        for _ in 0..40 {
            let a = t.sign(APP, &[&cred_id], b"x", None).unwrap();
            println!(
                "COUNTER {}",
                parse_auth_data(&a.auth_data, APP).unwrap().counter
            );
        }
    }

    #[test]
    fn counter_is_unique_across_concurrent_processes() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let cred = t
            .create_resident(&request(CA_USER_ID), &pin("123456"))
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "token::soft::tests::child_signs_many",
                        "--ignored",
                        "--nocapture",
                    ])
                    .env("SOFT_TOKEN_CHILD", dir.path().join("token.json"))
                    .env("SOFT_TOKEN_CRED", hex::encode(&cred.credential_id))
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut all = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let counters: Vec<u32> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("COUNTER ").map(|n| n.parse().unwrap()))
                .collect();
            assert_eq!(counters.len(), 40);
            assert!(counters.windows(2).all(|w| w[0] < w[1]), "{counters:?}");
            all.extend(counters);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "two processes got the same counter value");
    }

    #[test]
    fn same_rp_and_user_replaces_the_credential_other_users_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let p = pin("123456");
        let first = t.create_resident(&request(CA_USER_ID), &p).unwrap();
        let other = t.create_resident(&request(b"someone-else"), &p).unwrap();
        let second = t.create_resident(&request(CA_USER_ID), &p).unwrap();
        assert_ne!(first.public_key_sec1, second.public_key_sec1);
        let list = t.list_resident(&p).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.contains(&second) && list.contains(&other) && !list.contains(&first));
        // The old credential is gone: signing with its id fails.
        assert_eq!(
            t.sign(APP, &[&first.credential_id], b"x", None),
            Err(TokenError::NoCredentials)
        );
    }

    #[test]
    fn cred_protect_hides_credentials_from_unverified_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let p = pin("123456");
        let cred = t.create_resident(&request(CA_USER_ID), &p).unwrap();
        assert!(t.find_credentials(APP, &[], None).unwrap().is_empty());
        let found = t.find_credentials(APP, &[], Some(&p)).unwrap();
        assert_eq!(found[0].credential_id, cred.credential_id);
        assert_eq!(found[0].user_id.as_deref(), Some(CA_USER_ID));
        let by_id = t
            .find_credentials(APP, &[b"nope", &cred.credential_id], None)
            .unwrap();
        assert_eq!(by_id.len(), 1);
        assert!(
            t.find_credentials("ssh:other", &[], Some(&p))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn cred_protect_3_refuses_every_unverified_use() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let p = pin("123456");
        let mut req = request(CA_USER_ID);
        req.verify_required = true;
        let cred = t.create_resident(&req, &p).unwrap();
        assert!(cred.verify_required);
        let ids: &[&[u8]] = &[&cred.credential_id];
        assert!(t.find_credentials(APP, ids, None).unwrap().is_empty());
        assert_eq!(t.sign(APP, ids, b"m", None), Err(TokenError::NoCredentials));
        let a = t.sign(APP, ids, b"m", Some(&p)).unwrap();
        assert_eq!(a.auth_data[32], FLAG_UP | FLAG_UV);
        assert!(t.list_resident(&p).unwrap()[0].verify_required);
    }

    #[test]
    fn resident_credentials_need_a_pin() {
        let dir = tempfile::tempdir().unwrap();
        let t = SoftToken::open(&dir.path().join("t.json")).unwrap();
        assert_eq!(
            t.create_resident(&request(CA_USER_ID), &pin("1234")),
            Err(TokenError::PinNotSet)
        );
    }

    #[test]
    fn wrong_pins_cost_retries_then_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        token_with_pin(dir.path());
        let wrong = pin("000000");
        let mut seen = Vec::new();
        // Three wrong PINs per "plug-in" (process); re-opening stands for re-inserting the key.
        for plug in 0..3 {
            let t = SoftToken::open(&path).unwrap();
            for _ in 0..3 {
                seen.push(t.list_resident(&wrong).unwrap_err());
            }
            if plug < 2 {
                // A fourth try costs nothing: the key refuses PINs until it is re-plugged.
                assert_eq!(t.list_resident(&wrong), Err(TokenError::PinAuthBlocked));
                assert_eq!(t.info().unwrap().pin_retries, Some(5 - 3 * plug));
            }
        }
        assert_eq!(
            seen[..3],
            [
                TokenError::PinInvalid {
                    retries_left: Some(7)
                },
                TokenError::PinInvalid {
                    retries_left: Some(6)
                },
                TokenError::PinAuthBlocked,
            ]
        );
        // 9 wrong PINs were tried but the 8th blocked the key for good.
        assert_eq!(seen[7], TokenError::PinBlocked);
        let t = SoftToken::open(&path).unwrap();
        assert_eq!(t.list_resident(&pin("123456")), Err(TokenError::PinBlocked));
        assert_eq!(t.info().unwrap().pin_retries, Some(0));
    }

    #[test]
    fn a_right_pin_resets_the_retries() {
        let dir = tempfile::tempdir().unwrap();
        let t = token_with_pin(dir.path());
        let _ = t.list_resident(&pin("000000"));
        assert_eq!(t.info().unwrap().pin_retries, Some(7));
        t.list_resident(&pin("123456")).unwrap();
        assert_eq!(t.info().unwrap().pin_retries, Some(8));
        // Changing the PIN needs the current one.
        assert!(t.set_pin(None, &pin("654321")).is_err());
        t.set_pin(Some(&pin("123456")), &pin("654321")).unwrap();
        t.list_resident(&pin("654321")).unwrap();
    }
}
