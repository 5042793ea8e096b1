//! Batch and single verification accept exactly the same signatures, including weak keys,
//! malformed encodings and crafted signatures with small-order components (the case where a
//! cofactorless batch and a single check disagree).

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signer;
use proptest::prelude::*;
use timed::types::signature::{verify, verify_batch, VerifyItem};
use timed::types::{PublicKey, SecretKey, Signature};

/// k = SHA-512(R || A || M) reduced mod l, as ed25519 computes it.
fn hram(r: &[u8; 32], a: &[u8; 32], m: &[u8]) -> Scalar {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    h.update(r);
    h.update(a);
    h.update(m);
    let out: [u8; 64] = h.finalize().into();
    Scalar::from_bytes_mod_order_wide(&out)
}

/// One case: a key, a message and a signature, made in one of several good or bad ways.
#[derive(Clone, Debug)]
struct Case {
    pk: PublicKey,
    msg: Vec<u8>,
    sig: Signature,
}

fn honest(seed: u8, msg: &[u8]) -> Case {
    let k = SecretKey::from_bytes(&[seed; 32]);
    Case {
        pk: k.public_key(),
        msg: msg.to_vec(),
        sig: k.sign(msg),
    }
}

/// Signs by hand with secret scalar `a`, nonce `r`, adding torsion `t_r` to R and `t_a` to A.
fn crafted(a: Scalar, r: Scalar, t_r: usize, t_a: usize, msg: &[u8]) -> Case {
    let big_a: EdwardsPoint = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[t_a];
    let big_r: EdwardsPoint = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[t_r];
    let a_bytes = big_a.compress().0;
    let r_bytes = big_r.compress().0;
    let k = hram(&r_bytes, &a_bytes, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    Case {
        pk: PublicKey(a_bytes),
        msg: msg.to_vec(),
        sig: Signature(sig),
    }
}

fn case() -> impl Strategy<Value = Case> {
    let msg = prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        // Good.
        (any::<u8>(), msg.clone()).prop_map(|(s, m)| honest(s, &m)),
        // Signature over another message.
        (any::<u8>(), msg.clone()).prop_map(|(s, m)| {
            let mut c = honest(s, &m);
            c.msg.push(1);
            c
        }),
        // A flipped bit anywhere in the signature.
        (any::<u8>(), msg.clone(), 0usize..512).prop_map(|(s, m, bit)| {
            let mut c = honest(s, &m);
            c.sig.0[bit / 8] ^= 1 << (bit % 8);
            c
        }),
        // s not reduced: s + l.
        (any::<u8>(), msg.clone()).prop_map(|(s, m)| {
            let mut c = honest(s, &m);
            let mut s_bytes = [0u8; 32];
            s_bytes.copy_from_slice(&c.sig.0[32..]);
            // The group order l, little endian.
            let mut l = [0u8; 32];
            hex::decode_to_slice(
                "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
                &mut l,
            )
            .unwrap();
            let mut carry = 0u16;
            for i in 0..32 {
                let v = u16::from(s_bytes[i]) + u16::from(l[i]) + carry;
                s_bytes[i] = v as u8;
                carry = v >> 8;
            }
            c.sig.0[32..].copy_from_slice(&s_bytes);
            c
        }),
        // Weak (small-order) public keys, with R the same point.
        (0usize..8, msg.clone()).prop_map(|(t, m)| {
            let p = EIGHT_TORSION[t].compress().0;
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&p);
            Case {
                pk: PublicKey(p),
                msg: m,
                sig: Signature(sig),
            }
        }),
        // Torsion added to R and/or A: the equation holds cofactored but not cofactorless.
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            0usize..8,
            0usize..8,
            msg.clone()
        )
            .prop_map(|(a, r, tr, ta, m)| crafted(
                Scalar::from_bytes_mod_order(a),
                Scalar::from_bytes_mod_order(r),
                tr,
                ta,
                &m
            )),
        // Non-canonical encodings: y >= p (only a few exist) and random garbage.
        (
            any::<[u8; 32]>(),
            any::<[u8; 64]>().prop_map(|_| ()),
            msg.clone()
        )
            .prop_map(|(mut pk, _, m)| {
                pk[31] |= 0x7f;
                pk[0] |= 0xed;
                Case {
                    pk: PublicKey(pk),
                    msg: m,
                    sig: Signature([0x42; 64]),
                }
            }),
        (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>(), msg).prop_map(|(pk, r, s, m)| {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&r);
            sig[32..].copy_from_slice(&s);
            Case {
                pk: PublicKey(pk),
                msg: m,
                sig: Signature(sig),
            }
        }),
    ]
}

/// (batch verdicts, single verdicts) for the same cases.
fn both_paths(cases: &[Case]) -> (Vec<bool>, Vec<bool>) {
    let items: Vec<VerifyItem> = cases
        .iter()
        .map(|c| VerifyItem {
            public_key: &c.pk,
            message: &c.msg,
            signature: &c.sig,
        })
        .collect();
    let single: Vec<bool> = cases
        .iter()
        .map(|c| verify(&c.pk, &c.msg, &c.sig))
        .collect();
    (verify_batch(&items), single)
}

fn agree(cases: &[Case]) -> Result<(), TestCaseError> {
    let (batch, single) = both_paths(cases);
    prop_assert_eq!(batch, single);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn batch_and_single_accept_the_same_set(cases in prop::collection::vec(case(), 1..24)) {
        agree(&cases)?;
    }
}

#[test]
fn torsion_crafted_signatures_get_the_same_verdict_in_bulk() {
    // Sixty-four signatures whose R carries an 8-torsion component, alone and mixed with good
    // ones: a cofactorless batch would accept each with probability 1/8 while a cofactorless
    // single check rejects it. Here both paths agree on every one.
    let mut cases = Vec::new();
    for i in 0..64u8 {
        let a = Scalar::from_bytes_mod_order([i.wrapping_add(3); 32]);
        let r = Scalar::from_bytes_mod_order([i.wrapping_add(101); 32]);
        cases.push(crafted(a, r, 1 + (i as usize % 7), 0, &[i]));
    }
    let (batch, single) = both_paths(&cases);
    assert_eq!(batch, single);
    let mut mixed = cases.clone();
    for i in 0..16u8 {
        mixed.push(honest(i, b"mixed"));
    }
    let (batch, single) = both_paths(&mixed);
    assert_eq!(batch, single);
    assert!(single[64..].iter().all(|ok| *ok), "honest signatures pass");
}

#[test]
fn standard_ed25519_signers_are_accepted() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let sig = key.sign(b"interop");
    let pk = PublicKey(key.verifying_key().to_bytes());
    let sig = Signature(sig.to_bytes());
    assert!(verify(&pk, b"interop", &sig));
    let items = [VerifyItem {
        public_key: &pk,
        message: b"interop",
        signature: &sig,
    }];
    assert_eq!(verify_batch(&items), vec![true]);
}
