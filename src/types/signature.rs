//! Signature verification: one rule, two speeds.
//!
//! Consensus needs every honest node to accept exactly the same signatures, whether it checks
//! them one by one or in a batch. Plain RFC 8032 leaves two choices open (cofactored or
//! cofactorless equation, canonical encodings or not) and a cofactorless batch can disagree with
//! a cofactorless single check on crafted signatures whose R carries a small torsion component
//! (Chalkias, Garillot, Nikolaenko, "Taming the many EdDSAs", 2020). So timed fixes one rule and
//! uses it on both paths:
//!
//! 1. the public key A and the nonce point R are canonical encodings of curve points and neither
//!    is of small order (this is what `ed25519-dalek`'s `verify_strict` demands of them);
//! 2. s is canonical (below the group order);
//! 3. the cofactored equation `[8][s]B = [8]R + [8][k]A` holds (ZIP 215), which is the equation a
//!    batch can check exactly.
//!
//! Rule 3 comes from `ed25519-zebra`, whose single and batch verifiers are built to agree; rule 1
//! is our own pre-check, applied identically before both. A batch that fails is re-checked one
//! signature at a time, so a bad signature costs its sender, never an honest neighbour.
//!
//! ```text
//! items ──precheck──► zebra batch ──ok──► all valid
//!                          │fail
//!                          └──► zebra single per item ──► per-item verdict
//! ```

use super::keys::{PublicKey, Signature};

/// Verifies one signature under the node's strict rule.
pub fn verify(public_key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    if !precheck(public_key, signature) {
        return false;
    }
    let Ok(vk) = ed25519_zebra::VerificationKey::try_from(public_key.0) else {
        return false;
    };
    vk.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
        .is_ok()
}

/// One signature to check in a batch.
#[derive(Clone, Copy, Debug)]
pub struct VerifyItem<'a> {
    pub public_key: &'a PublicKey,
    pub message: &'a [u8],
    pub signature: &'a Signature,
}

/// Verifies many signatures, returning one verdict per item in order.
///
/// Accepts exactly the items that [`verify`] accepts; the batch is only a faster way to reach
/// the same verdicts when (as usual) every signature is good.
pub fn verify_batch(items: &[VerifyItem<'_>]) -> Vec<bool> {
    let mut verdicts: Vec<bool> = items
        .iter()
        .map(|i| precheck(i.public_key, i.signature))
        .collect();
    let mut batch = ed25519_zebra::batch::Verifier::new();
    let mut queued = Vec::with_capacity(items.len());
    for (idx, item) in items.iter().enumerate() {
        if verdicts[idx] {
            let vk = ed25519_zebra::VerificationKeyBytes::from(item.public_key.0);
            let sig = ed25519_zebra::Signature::from_bytes(&item.signature.0);
            batch.queue((vk, sig, item.message));
            queued.push(idx);
        }
    }
    if queued.is_empty() {
        return verdicts;
    }
    // The batch's random coefficients must be unpredictable to whoever made the signatures:
    // the thread's CSPRNG (ChaCha, seeded and reseeded from the OS) is; drawing them from the
    // OS directly cost a `getrandom` call per signature.
    if batch.verify(rand::thread_rng()).is_ok() {
        return verdicts;
    }
    for idx in queued {
        let item = &items[idx];
        verdicts[idx] = verify(item.public_key, item.message, item.signature);
    }
    verdicts
}

/// Rule 1: canonical, non-small-order encodings of A and R.
///
/// Checked on the bytes, without decoding the points: zebra decodes A and R again on both
/// paths (batch and single) and refuses an encoding that is not a curve point, so decoding here
/// as well would only repeat the most expensive part of a check (two of the four point
/// decodings a signature costs). What is left to check here is that y is below p and that the
/// encoding is not one of the ten that decode to a point of small order.
fn precheck(public_key: &PublicKey, signature: &Signature) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature.0[..32]);
    canonical_not_small_order(&public_key.0) && canonical_not_small_order(&r)
}

/// Whether `bytes` encodes y below p and is not an encoding of a small-order point. Together
/// with "decodes to a curve point" (which zebra enforces) this is exactly "canonical and not of
/// small order": decoding reduces y modulo p, so with y < p an encoding is canonical when its
/// sign bit is that of x, which it always is for x ≠ 0; x = 0 only for y = ±1, the identity and
/// the point of order 2, whose both sign bits are among the small-order encodings refused.
fn canonical_not_small_order(bytes: &[u8; 32]) -> bool {
    y_below_p(bytes) && !small_order_encodings().contains(bytes)
}

/// Every encoding with y < p that decodes to one of the eight points of small order: each
/// point's canonical encoding, and the same with the sign bit flipped (for x ≠ 0 that is the
/// negated point, itself of small order; for x = 0 it is the second encoding of the same point).
fn small_order_encodings() -> &'static [[u8; 32]; 16] {
    static ENCODINGS: std::sync::OnceLock<[[u8; 32]; 16]> = std::sync::OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut all = [[0u8; 32]; 16];
        for (i, point) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
        {
            let canonical = point.compress().0;
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            all[2 * i] = canonical;
            all[2 * i + 1] = flipped;
        }
        all
    })
}

/// Whether the y coordinate encoded in `bytes` (the low 255 bits, little endian) is below
/// p = 2^255 − 19: only the 19 values p..2^255 − 1 are not.
fn y_below_p(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::keys::SecretKey;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::edwards::CompressedEdwardsY;

    #[test]
    fn good_signature_verifies_and_tampering_fails() {
        let k = SecretKey::generate();
        let sig = k.sign(b"hello");
        assert!(verify(&k.public_key(), b"hello", &sig));
        assert!(!verify(&k.public_key(), b"hellO", &sig));
        let mut bad = sig;
        bad.0[63] ^= 0x80;
        assert!(!verify(&k.public_key(), b"hello", &bad));
    }

    /// Rule 1 as first written: decode, re-encode, compare, and refuse small order.
    fn canonical_by_recompression(bytes: &[u8; 32]) -> bool {
        match CompressedEdwardsY(*bytes).decompress() {
            Some(point) => point.compress().0 == *bytes && !point.is_small_order(),
            None => false,
        }
    }

    /// The byte check, plus the decoding zebra does on both paths, is rule 1 exactly.
    #[test]
    fn the_byte_check_and_decoding_agree_with_recompression() {
        use rand::RngCore;
        let mut cases: Vec<[u8; 32]> = Vec::new();
        // Every y from p to 2^255 - 1, and the y = ±1 points, with both sign bits.
        for low in 0xeb..=0xffu8 {
            let mut y = [0xff; 32];
            y[0] = low;
            y[31] = 0x7f;
            cases.push(y);
        }
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        cases.extend([one, minus_one, [0; 32]]);
        for point in EIGHT_TORSION.iter() {
            cases.push(point.compress().0);
        }
        for _ in 0..20 {
            cases.push(SecretKey::generate().public_key().0);
        }
        let mut rng = rand::thread_rng();
        for _ in 0..20_000 {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            cases.push(b);
        }
        let with_sign: Vec<[u8; 32]> = cases
            .iter()
            .flat_map(|c| {
                let mut flipped = *c;
                flipped[31] ^= 0x80;
                [*c, flipped]
            })
            .collect();
        let mut accepted = 0;
        for bytes in &with_sign {
            let expected = canonical_by_recompression(bytes);
            let decodes = CompressedEdwardsY(*bytes).decompress().is_some();
            assert_eq!(
                canonical_not_small_order(bytes) && decodes,
                expected,
                "{}",
                hex::encode(bytes)
            );
            accepted += usize::from(expected);
        }
        assert!(accepted > 1_000, "real points were among the cases");
    }

    #[test]
    fn small_order_public_keys_are_rejected() {
        // The identity and the other 8-torsion points are "weak keys": a signature by them
        // verifies for many messages under a cofactored equation. Rule 1 refuses them.
        for point in EIGHT_TORSION.iter() {
            let pk = PublicKey(point.compress().0);
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&point.compress().0);
            assert!(!verify(&pk, b"anything", &Signature(sig)));
        }
    }

    /// The byte check lets through encodings that are not curve points; zebra must refuse
    /// them, alone and in a batch, as A and as R.
    #[test]
    fn encodings_that_are_not_points_are_refused() {
        let not_a_point = (0u8..=255)
            .map(|b| {
                let mut bytes = [b; 32];
                bytes[31] &= 0x7f;
                bytes
            })
            .find(|b| CompressedEdwardsY(*b).decompress().is_none())
            .expect("some byte pattern is not a curve point");
        assert!(canonical_not_small_order(&not_a_point));
        let key = SecretKey::generate();
        let good = key.sign(b"m");
        let mut bad_r = good;
        bad_r.0[..32].copy_from_slice(&not_a_point);
        let bad_a = PublicKey(not_a_point);
        let pk = key.public_key();
        assert!(!verify(&pk, b"m", &bad_r));
        assert!(!verify(&bad_a, b"m", &good));
        let items = [
            VerifyItem {
                public_key: &pk,
                message: b"m",
                signature: &good,
            },
            VerifyItem {
                public_key: &pk,
                message: b"m",
                signature: &bad_r,
            },
            VerifyItem {
                public_key: &bad_a,
                message: b"m",
                signature: &good,
            },
            VerifyItem {
                public_key: &pk,
                message: b"m",
                signature: &good,
            },
        ];
        assert_eq!(verify_batch(&items), vec![true, false, false, true]);
    }

    #[test]
    fn batch_flags_exactly_the_bad_items() {
        let keys: Vec<SecretKey> = (0..6).map(|_| SecretKey::generate()).collect();
        let msgs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<Signature> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        sigs[2].0[5] ^= 1;
        let pks: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
        let items: Vec<VerifyItem> = (0..6)
            .map(|i| VerifyItem {
                public_key: &pks[i],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        assert_eq!(
            verify_batch(&items),
            vec![true, true, false, true, true, true]
        );
    }
}
