//! Tests against a real FIDO2 security key. They are `#[ignore]`d and, even when run, do nothing
//! unless `SSHBREAK_HW_TEST=1` is set — and then they fail loudly if no key can be opened.
//!
//! Run them with one key plugged in (or name it with `SSHBREAK_TOKEN=hid:/dev/hidrawN`), a PIN
//! set on it, and that PIN in a file:
//!
//! ```text
//! SSHBREAK_HW_TEST=1 SSHBREAK_PIN_FILE=/path/to/pin \
//!     cargo test --test hardware -- --ignored --test-threads=1
//! ```
//!
//! `end_to_end_create_sign_verify` asks for two touches and creates (or replaces) a resident
//! credential for application `ssh:sshbreak-hwtest` with user id `sshbreak-hwtest`; it never
//! touches `ssh:sshbreak` or any other credential. One thread, because each test opens the key.

use signature::Verifier;
use sshbreak::token::hid::HidToken;
use sshbreak::token::{CreateRequest, SecurityKey, TokenSpec, assertion_to_ssh_signature};

const APPLICATION: &str = "ssh:sshbreak-hwtest";
const USER_ID: &[u8] = b"sshbreak-hwtest";

/// The key under test, or `None` (test passes vacuously) when hardware tests are not enabled.
fn token() -> Option<HidToken> {
    if std::env::var("SSHBREAK_HW_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SSHBREAK_HW_TEST=1 to run against a real key");
        return None;
    }
    let path = match std::env::var("SSHBREAK_TOKEN")
        .ok()
        .map(|s| s.parse::<TokenSpec>())
    {
        None | Some(Ok(TokenSpec::Hid)) => None,
        Some(Ok(TokenSpec::HidPath(p))) => Some(p),
        Some(other) => panic!("SSHBREAK_TOKEN must name a hid token here, got {other:?}"),
    };
    match HidToken::open(path.as_deref()) {
        Ok(token) => Some(token),
        Err(e) => panic!("SSHBREAK_HW_TEST=1 but no usable security key: {e}"),
    }
}

fn pin() -> sshbreak::token::Pin {
    assert!(
        std::env::var_os("SSHBREAK_PIN_FILE").is_some(),
        "set SSHBREAK_PIN_FILE to a file holding the key's PIN"
    );
    sshbreak::ui::read_pin("the hardware test key").expect("read the PIN")
}

#[test]
#[ignore = "needs a security key: SSHBREAK_HW_TEST=1"]
fn info_describes_a_fido2_key() {
    let Some(token) = token() else { return };
    let info = token.info().expect("getInfo");
    eprintln!("{}: {info:?}", token.describe());
    assert_eq!(info.aaguid.len(), 32, "AAGUID as 32 hex digits");
    assert!(
        info.versions.iter().any(|v| v.starts_with("FIDO_2")),
        "{:?}",
        info.versions
    );
    if info.pin_set == Some(true) {
        assert!(
            info.pin_retries.is_some(),
            "a key with a PIN reports its retries"
        );
    }
}

#[test]
#[ignore = "needs a security key: SSHBREAK_HW_TEST=1"]
fn find_credentials_answers_without_a_touch() {
    let Some(token) = token() else { return };
    // A credential id the key cannot have made: it must say "none", not error, and not blink.
    let bogus = [0x5a_u8; 64];
    let found = token
        .find_credentials(APPLICATION, &[&bogus[..]], None)
        .expect("lookup by id");
    assert!(found.is_empty());
    let found = token
        .find_credentials("ssh:sshbreak-hwtest-absent", &[], None)
        .expect("discoverable lookup");
    assert!(found.is_empty());
}

#[test]
#[ignore = "needs a security key: SSHBREAK_HW_TEST=1"]
fn end_to_end_create_sign_verify() {
    let Some(token) = token() else { return };
    let pin = pin();
    let req = CreateRequest {
        application: APPLICATION.into(),
        user_id: USER_ID.to_vec(),
        user_name: "sshbreak-hwtest".into(),
        verify_required: false,
    };
    eprintln!("touch the key to create the test credential");
    let cred = token.create_resident(&req, &pin).expect("makeCredential");
    let key_data = cred.key_data().expect("SEC1 point");
    assert_eq!(cred.application, APPLICATION);

    // Without the PIN, credProtect 2 hides it from a discoverable lookup but not from one by id.
    let by_id = token
        .find_credentials(APPLICATION, &[&cred.credential_id], None)
        .expect("lookup by id");
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0].credential_id, cred.credential_id);
    let verified = token
        .find_credentials(APPLICATION, &[], Some(&pin))
        .expect("verified discoverable lookup");
    assert!(
        verified
            .iter()
            .any(|f| f.credential_id == cred.credential_id
                && f.user_id.as_deref() == Some(USER_ID)),
        "{verified:?}"
    );

    let listed = token.list_resident(&pin).expect("credential management");
    assert!(listed.contains(&cred), "{listed:?}");

    let message = b"sshbreak hardware test: the to-be-signed bytes of a certificate";
    eprintln!("touch the key to sign");
    let assertion = token
        .sign(APPLICATION, &[&cred.credential_id], message, None)
        .expect("getAssertion");
    assert_eq!(assertion.credential_id, cred.credential_id);
    let (sig, auth) = assertion_to_ssh_signature(&assertion, APPLICATION).expect("convert");
    assert!(auth.user_present(), "a touched signature has UP set");
    key_data.verify(message, &sig).expect("ssh-key verifies it");
    assert!(key_data.verify(b"another message", &sig).is_err());
}
