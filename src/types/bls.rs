//! BLS12-381 keys and signatures, for finality certificates whose size and checking cost do
//! not grow with the masternode set (SCALING.md, step 2).
//!
//! Ed25519 stays the signature of transactions, handshakes and today's votes. BLS adds what
//! ed25519 cannot do: signatures of one message by many keys add up to one 96-byte signature,
//! checked against the sum of the keys with one pairing, so a certificate of two thirds of a
//! thousand masternodes is a signature and a bitmap rather than 667 signatures.
//!
//! The scheme is the IETF BLS draft's proof-of-possession ciphersuite with small public keys
//! (`min_pk`: 48-byte keys in G1, 96-byte signatures in G2), as Ethereum's beacon chain uses.
//! Adding keys is only sound if nobody chose a key as a function of the others (a rogue key
//! `X − ΣK` would let its owner forge the whole sum's signature), so every key is registered
//! with a proof of possession: its signature, under a separate domain tag, of itself and the
//! operator key it belongs to (binding the two: a copied key and proof fail under another
//! operator key).
//!
//! A node's BLS secret is derived from its operator key's secret, so a masternode keeps one key
//! file and every backup of it already covers both.
//!
//! Keys and signatures stay bytes in every data structure, like ed25519's: they arrive from
//! peers and are trusted only once decoded and checked here. Decoding a key and checking that
//! it is in the group costs about 160 µs (`cargo bench --bench signatures -- bls`), so code
//! that checks aggregates keeps [`ValidBlsKey`]s of the set rather than decoding again.

use super::hash::{tag, Hash32};
use super::keys::{PublicKey, SecretKey};
use bincode::{Decode, Encode};
use blst::min_pk;
use blst::BLST_ERROR;
use std::fmt;

/// Domain separation tags of the draft's proof-of-possession ciphersuite: one for signatures
/// of messages, one for proofs of possession, so neither can stand in for the other.
const SIGN_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
const POP_DST: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// A compressed BLS public key (48 bytes, not yet checked to be a valid point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct BlsPublicKey(pub [u8; 48]);

/// A compressed BLS signature (96 bytes, not yet checked to be a valid point).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct BlsSignature(pub [u8; 96]);

/// A secret BLS key. Not `Debug`, so it never lands in a log line.
#[derive(Clone)]
pub struct BlsSecretKey(min_pk::SecretKey);

/// A public key that decodes to a point of the prime-order group other than the identity:
/// the form that signatures and aggregates are checked against.
#[derive(Clone, Debug)]
pub struct ValidBlsKey(min_pk::PublicKey);

impl BlsSecretKey {
    /// The BLS key of the node whose operator key is `operator`.
    pub fn from_operator(operator: &SecretKey) -> BlsSecretKey {
        let ikm = Hash32::digest(tag::BLS_KEY, &operator.to_bytes());
        match min_pk::SecretKey::key_gen(&ikm.0, &[]) {
            Ok(key) => BlsSecretKey(key),
            // key_gen refuses only key material shorter than 32 bytes; a digest is 32.
            Err(e) => unreachable!("BLS key generation from 32 bytes failed: {e:?}"),
        }
    }

    pub fn public_key(&self) -> BlsPublicKey {
        BlsPublicKey(self.0.sk_to_pk().compress())
    }

    pub fn sign(&self, message: &[u8]) -> BlsSignature {
        BlsSignature(self.0.sign(message, SIGN_DST, &[]).compress())
    }

    /// The BLS key and proof of possession a registration (or a genesis entry) names for the
    /// node whose operator key is `operator`.
    pub fn registration_keys(operator: &SecretKey) -> (BlsPublicKey, BlsSignature) {
        let bls = BlsSecretKey::from_operator(operator);
        (
            bls.public_key(),
            bls.proof_of_possession(&operator.public_key()),
        )
    }

    /// The proof of possession that registers this key for `operator_key`.
    pub fn proof_of_possession(&self, operator_key: &PublicKey) -> BlsSignature {
        let message = possession_message(&self.public_key(), operator_key);
        BlsSignature(self.0.sign(&message, POP_DST, &[]).compress())
    }
}

impl BlsPublicKey {
    /// The decoded key, or `None` when the bytes are not a point of the group (or are the
    /// identity, which would let anyone "sign" as it).
    pub fn validate(&self) -> Option<ValidBlsKey> {
        min_pk::PublicKey::key_validate(&self.0)
            .ok()
            .map(ValidBlsKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<BlsPublicKey> {
        let mut out = [0u8; 48];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlsPublicKey(out))
    }
}

impl BlsSignature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<BlsSignature> {
        let mut out = [0u8; 96];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlsSignature(out))
    }
}

/// What a proof of possession signs: the key and the operator key it is registered for.
fn possession_message(key: &BlsPublicKey, operator_key: &PublicKey) -> [u8; 80] {
    let mut m = [0u8; 80];
    m[..48].copy_from_slice(&key.0);
    m[48..].copy_from_slice(&operator_key.0);
    m
}

/// Whether `proof` shows that whoever registers `key` for `operator_key` holds its secret.
pub fn verify_possession(
    key: &BlsPublicKey,
    operator_key: &PublicKey,
    proof: &BlsSignature,
) -> bool {
    let Some(valid) = key.validate() else {
        return false;
    };
    let message = possession_message(key, operator_key);
    check(&valid, &message, POP_DST, proof)
}

/// Whether `signature` is `key`'s signature of `message`.
pub fn verify(key: &ValidBlsKey, message: &[u8], signature: &BlsSignature) -> bool {
    check(key, message, SIGN_DST, signature)
}

fn check(key: &ValidBlsKey, message: &[u8], dst: &[u8], signature: &BlsSignature) -> bool {
    let Ok(sig) = min_pk::Signature::uncompress(&signature.0) else {
        return false;
    };
    sig.verify(true, message, dst, &[], &key.0, false) == BLST_ERROR::BLST_SUCCESS
}

/// The sum of `signatures`, or `None` if one of them is not a point of the group.
pub fn aggregate(signatures: &[BlsSignature]) -> Option<BlsSignature> {
    let decoded = signatures
        .iter()
        .map(|s| min_pk::Signature::uncompress(&s.0).ok())
        .collect::<Option<Vec<_>>>()?;
    let refs: Vec<&min_pk::Signature> = decoded.iter().collect();
    let sum = min_pk::AggregateSignature::aggregate(&refs, true).ok()?;
    Some(BlsSignature(sum.to_signature().compress()))
}

/// Whether `signature` is the sum of every key's signature of `message`. Sound only for keys
/// registered with a proof of possession.
pub fn verify_aggregate(keys: &[&ValidBlsKey], message: &[u8], signature: &BlsSignature) -> bool {
    if keys.is_empty() {
        return false;
    }
    let Ok(sig) = min_pk::Signature::uncompress(&signature.0) else {
        return false;
    };
    let keys: Vec<&min_pk::PublicKey> = keys.iter().map(|k| &k.0).collect();
    sig.fast_aggregate_verify(true, message, SIGN_DST, &keys) == BLST_ERROR::BLST_SUCCESS
}

impl fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsPublicKey({})", self.to_hex())
    }
}

impl fmt::Display for BlsPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlsSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlsSignature({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> (SecretKey, BlsSecretKey) {
        let operator = SecretKey::from_bytes(&[i; 32]);
        let bls = BlsSecretKey::from_operator(&operator);
        (operator, bls)
    }

    #[test]
    fn the_key_follows_the_operator_key() {
        assert_eq!(node(1).1.public_key(), node(1).1.public_key());
        assert_ne!(node(1).1.public_key(), node(2).1.public_key());
        assert!(node(1).1.public_key().validate().is_some());
        let hex = node(1).1.public_key().to_hex();
        assert_eq!(BlsPublicKey::from_hex(&hex), Some(node(1).1.public_key()));
    }

    #[test]
    fn a_proof_of_possession_binds_the_key_to_its_operator() {
        let (op1, bls1) = node(1);
        let (op2, bls2) = node(2);
        let key1 = bls1.public_key();
        let pop1 = bls1.proof_of_possession(&op1.public_key());
        assert!(verify_possession(&key1, &op1.public_key(), &pop1));
        // Copied to another operator, to another key, or a signature of the key made with
        // the message domain: all refused.
        assert!(!verify_possession(&key1, &op2.public_key(), &pop1));
        assert!(!verify_possession(
            &bls2.public_key(),
            &op1.public_key(),
            &pop1
        ));
        let plain = bls1.sign(&possession_message(&key1, &op1.public_key()));
        assert!(!verify_possession(&key1, &op1.public_key(), &plain));
    }

    #[test]
    fn an_aggregate_verifies_against_exactly_its_signers() {
        let nodes: Vec<_> = (1..=4).map(|i| node(i).1).collect();
        let keys: Vec<ValidBlsKey> = nodes
            .iter()
            .map(|n| n.public_key().validate().unwrap())
            .collect();
        let msg = b"lock batch";
        let sigs: Vec<BlsSignature> = nodes[..3].iter().map(|n| n.sign(msg)).collect();
        assert!(verify(&keys[0], msg, &sigs[0]));
        assert!(!verify(&keys[1], msg, &sigs[0]));
        let sum = aggregate(&sigs).unwrap();
        let signers: Vec<&ValidBlsKey> = keys[..3].iter().collect();
        assert!(verify_aggregate(&signers, msg, &sum));
        assert!(!verify_aggregate(&signers, b"another batch", &sum));
        let claimed: Vec<&ValidBlsKey> = keys.iter().collect();
        assert!(!verify_aggregate(&claimed, msg, &sum));
        assert!(!verify_aggregate(&signers[..2], msg, &sum));
        assert!(!verify_aggregate(&[], msg, &sum));
    }

    #[test]
    fn bytes_that_are_not_points_are_refused_without_panicking() {
        let (op, bls) = node(1);
        let junk_key = BlsPublicKey([0xff; 48]);
        let junk_sig = BlsSignature([0xff; 96]);
        assert!(junk_key.validate().is_none());
        assert!(BlsPublicKey([0; 48]).validate().is_none());
        // The identity's compressed encoding: a valid point, refused as a key.
        let mut identity = [0u8; 48];
        identity[0] = 0xc0;
        assert!(BlsPublicKey(identity).validate().is_none());
        assert!(!verify_possession(&junk_key, &op.public_key(), &junk_sig));
        let key = bls.public_key().validate().unwrap();
        assert!(!verify(&key, b"m", &junk_sig));
        assert!(aggregate(&[bls.sign(b"m"), junk_sig]).is_none());
        assert!(!verify_aggregate(&[&key], b"m", &junk_sig));
    }
}
