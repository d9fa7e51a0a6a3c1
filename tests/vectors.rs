//! The token conversions in `sshbreak::token` checked against an assertion produced outside this
//! project (libfido2's regression data, see `tests/vectors/README.md`): authData parsing, DER →
//! (r, s), the OpenSSH sk-ecdsa signature body, and the SEC1 → OpenSSH public key.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use ssh_key::encoding::Encode;
use sshbreak::token::{
    Assertion, assertion_to_ssh_signature, der_to_rs, parse_auth_data, sk_key_data,
    ssh_signature_body,
};

struct Vector {
    rp_id: String,
    public_key_sec1: Vec<u8>,
    auth_data: Vec<u8>,
    client_data_hash: Vec<u8>,
    signature_der: Vec<u8>,
    flags: u8,
    counter: u32,
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vector() -> Vector {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/fido2-es256-assertion.json"
    );
    let text = std::fs::read_to_string(path).expect("read the vector");
    let json: serde_json::Value = serde_json::from_str(&text).expect("vector is JSON");
    let field = |name: &str| json[name].as_str().expect(name).to_string();
    let number = |name: &str| json[name].as_u64().expect(name);
    Vector {
        rp_id: field("rp_id"),
        public_key_sec1: hex(&field("public_key_sec1")),
        auth_data: hex(&field("auth_data")),
        client_data_hash: hex(&field("client_data_hash")),
        signature_der: hex(&field("signature_der")),
        flags: u8::try_from(number("flags")).expect("flags fit a byte"),
        counter: u32::try_from(number("counter")).expect("counter fits u32"),
    }
}

/// The DER INTEGER bodies of r and s, read by offset (the vector's layout is fixed: both are
/// 33 bytes, 0x00 pad included) so that the check does not lean on the code under test.
fn der_integers(der: &[u8]) -> (&[u8], &[u8]) {
    assert_eq!(&der[..2], &[0x30, 0x46]);
    assert_eq!(&der[2..4], &[0x02, 0x21]);
    assert_eq!(&der[37..39], &[0x02, 0x21]);
    (&der[4..37], &der[39..72])
}

fn signed_data(v: &Vector) -> Vec<u8> {
    [v.auth_data.as_slice(), v.client_data_hash.as_slice()].concat()
}

#[test]
fn auth_data_gives_flags_counter_and_rp_id_hash() {
    let v = vector();
    assert_eq!(v.rp_id, "localhost");
    let parsed = parse_auth_data(&v.auth_data, "localhost").unwrap();
    assert_eq!(parsed.flags, 0);
    assert_eq!(parsed.flags, v.flags);
    assert_eq!(parsed.counter, 3);
    assert_eq!(parsed.counter, v.counter);
    assert_eq!(
        parsed.rp_id_hash,
        <[u8; 32]>::from(Sha256::digest(b"localhost"))
    );
    assert!(parse_auth_data(&v.auth_data, "ssh:").is_err());
}

#[test]
fn an_assertion_made_without_a_touch_says_so() {
    let v = vector();
    let parsed = parse_auth_data(&v.auth_data, "localhost").unwrap();
    assert!(!parsed.user_present());
    assert!(!parsed.user_verified());
}

#[test]
fn der_to_rs_strips_the_pad_bytes() {
    let v = vector();
    let (r, s) = der_to_rs(&v.signature_der).unwrap();
    let (der_r, der_s) = der_integers(&v.signature_der);
    assert_eq!(der_r[0], 0x00);
    assert_eq!(der_s[0], 0x00);
    assert_eq!(&r[..], &der_r[1..]);
    assert_eq!(&s[..], &der_s[1..]);
    assert!(r[0] & 0x80 != 0, "the vector was chosen for r's top bit");
    assert!(s[0] & 0x80 != 0, "the vector was chosen for s's top bit");
}

#[test]
fn ssh_signature_body_has_padded_mpints_then_flags_and_counter() {
    let v = vector();
    let (r, s) = der_to_rs(&v.signature_der).unwrap();
    let body = ssh_signature_body(&r, &s, v.flags, v.counter);

    // mpint r ‖ mpint s ‖ flags ‖ counter: what ssh_key::Signature::new takes (it adds the
    // string around the two mpints itself when encoding).
    let mut mpints = vec![0x00, 0x00, 0x00, 0x21, 0x00];
    mpints.extend_from_slice(&r);
    mpints.extend_from_slice(&[0x00, 0x00, 0x00, 0x21, 0x00]);
    mpints.extend_from_slice(&s);
    let mut expected = mpints.clone();
    expected.push(0x00); // flags
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x03]); // counter, big-endian
    assert_eq!(body, expected);
    assert_eq!(body.len(), 79);

    let assertion = Assertion {
        credential_id: vec![1, 2, 3],
        auth_data: v.auth_data.clone(),
        signature_der: v.signature_der.clone(),
    };
    let (sig, auth) = assertion_to_ssh_signature(&assertion, "localhost").unwrap();
    assert_eq!(sig.algorithm(), ssh_key::Algorithm::SkEcdsaSha2NistP256);
    assert_eq!(sig.as_bytes(), expected.as_slice());
    assert_eq!((auth.flags, auth.counter), (0, 3));

    // On the wire: string algorithm ‖ string(mpint r ‖ mpint s) ‖ byte flags ‖ uint32 counter.
    let wire = sig.encode_vec().unwrap();
    let name = b"sk-ecdsa-sha2-nistp256@openssh.com";
    let mut want = (name.len() as u32).to_be_bytes().to_vec();
    want.extend_from_slice(name);
    want.extend_from_slice(&(mpints.len() as u32).to_be_bytes());
    want.extend_from_slice(&mpints);
    want.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x03]);
    assert_eq!(wire, want);
}

#[test]
fn the_signature_verifies_over_auth_data_and_client_data_hash() {
    let v = vector();
    let key = VerifyingKey::from_sec1_bytes(&v.public_key_sec1).unwrap();
    let from_der = Signature::from_der(&v.signature_der).unwrap();
    key.verify(&signed_data(&v), &from_der).unwrap();

    // The same signature rebuilt from sshbreak's (r, s) halves.
    let (r, s) = der_to_rs(&v.signature_der).unwrap();
    let from_rs = Signature::from_slice(&[r, s].concat()).unwrap();
    key.verify(&signed_data(&v), &from_rs).unwrap();
}

#[test]
fn a_flipped_bit_in_r_fails_verification() {
    let v = vector();
    let key = VerifyingKey::from_sec1_bytes(&v.public_key_sec1).unwrap();
    let (mut r, s) = der_to_rs(&v.signature_der).unwrap();
    r[31] ^= 0x01;
    let tampered = Signature::from_slice(&[r, s].concat()).unwrap();
    assert!(key.verify(&signed_data(&v), &tampered).is_err());
}

#[test]
fn the_public_key_becomes_an_openssh_sk_key() {
    let v = vector();
    let key_data = sk_key_data(&v.public_key_sec1, "localhost").unwrap();
    let openssh = ssh_key::PublicKey::new(key_data, "").to_openssh().unwrap();
    assert!(
        openssh.starts_with("sk-ecdsa-sha2-nistp256@openssh.com "),
        "{openssh}"
    );

    let mut off_curve = v.public_key_sec1.clone();
    off_curve[64] ^= 0x01;
    assert!(sk_key_data(&off_curve, "localhost").is_err());
    assert!(sk_key_data(&v.public_key_sec1[..64], "localhost").is_err());
}
