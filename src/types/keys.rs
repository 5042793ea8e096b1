//! ed25519 keys and signatures as plain bytes, plus the secret key that signs.
//!
//! Public keys and signatures stay raw bytes in every data structure: they arrive from peers
//! and are only trusted after `signature::verify` (strict rules) accepts them.

use super::hash::{tag, Hash32};
use bincode::{Decode, Encode};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An ed25519 public key (32 bytes, not yet validated as a curve point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes: R then s).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Signature(pub [u8; 64]);

/// The 20-byte hash of a public key that an address encodes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct KeyHash(pub [u8; 20]);

/// A secret signing key. Not `Debug`, so it never lands in a log line.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// A key from a seeded generator: for simulations and tests that must replay exactly.
    pub fn from_rng<R: rand::RngCore + rand::CryptoRng>(rng: &mut R) -> SecretKey {
        SecretKey(SigningKey::generate(rng))
    }

    pub fn from_bytes(bytes: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl PublicKey {
    /// The key hash that addresses and outputs name.
    pub fn key_hash(&self) -> KeyHash {
        let h = Hash32::digest(tag::ADDRESS, &self.0);
        let mut out = [0u8; 20];
        out.copy_from_slice(&h.0[..20]);
        KeyHash(out)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<PublicKey> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(PublicKey(out))
    }
}

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", hex::encode(self.0))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("public key must be 64 hex characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_round_trips_and_signs() {
        let k = SecretKey::generate();
        let k2 = SecretKey::from_bytes(&k.to_bytes());
        assert_eq!(k.public_key(), k2.public_key());
        assert_eq!(k.sign(b"m"), k2.sign(b"m"));
        assert_ne!(
            k.public_key().key_hash(),
            SecretKey::generate().public_key().key_hash()
        );
    }
}
