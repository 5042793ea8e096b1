//! Human-readable addresses: `TIME1` (mainnet) or `TIME0` (testnet, localnet), then base58 of
//! the 20-byte key hash and a 4-byte checksum.
//!
//! The checksum covers the prefix too, so a mistyped character is caught by the checksum and an
//! address of the other network is caught, with its own error, by the prefix.

use super::hash::{tag, Hash32};
use super::keys::{KeyHash, PublicKey};
use super::network::Network;
use std::fmt;

const PREFIX_LEN: usize = 5;
const PAYLOAD_LEN: usize = 24;
/// Longest address text accepted before decoding, to bound work on hostile input.
const MAX_ADDRESS_LEN: usize = 64;

/// A key hash together with the network it is meant for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Address {
    pub network: Network,
    pub key_hash: KeyHash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("address {0:?} does not start with TIME0 or TIME1")]
    UnknownPrefix(String),
    #[error(
        "address {address:?} is for another network ({found_prefix}), this node runs {expected}"
    )]
    WrongNetwork {
        address: String,
        found_prefix: String,
        expected: Network,
    },
    #[error("address {0:?} contains characters that are not base58")]
    NotBase58(String),
    #[error("address {0:?} has the wrong length")]
    BadLength(String),
    #[error("address {0:?} has a bad checksum (mistyped?)")]
    BadChecksum(String),
}

impl Address {
    pub fn new(network: Network, key_hash: KeyHash) -> Address {
        Address { network, key_hash }
    }

    pub fn from_public_key(network: Network, pk: &PublicKey) -> Address {
        Address::new(network, pk.key_hash())
    }

    fn checksum(prefix: &str, key_hash: &KeyHash) -> [u8; 4] {
        let mut h = Hash32::hasher(tag::CHECKSUM);
        h.update(prefix.as_bytes());
        h.update(&key_hash.0);
        let d = Hash32::from_hasher(&h);
        [d.0[0], d.0[1], d.0[2], d.0[3]]
    }

    /// Parses `text` as an address of `network`.
    pub fn parse(text: &str, network: Network) -> Result<Address, AddressError> {
        let owned = || text.to_string();
        if text.len() > MAX_ADDRESS_LEN || !text.is_ascii() {
            return Err(AddressError::BadLength(owned()));
        }
        if text.len() < PREFIX_LEN {
            return Err(AddressError::UnknownPrefix(owned()));
        }
        let (prefix, body) = text.split_at(PREFIX_LEN);
        if prefix != "TIME0" && prefix != "TIME1" {
            return Err(AddressError::UnknownPrefix(owned()));
        }
        if prefix != network.address_prefix() {
            return Err(AddressError::WrongNetwork {
                address: owned(),
                found_prefix: prefix.to_string(),
                expected: network,
            });
        }
        let raw = bs58::decode(body)
            .into_vec()
            .map_err(|_| AddressError::NotBase58(owned()))?;
        if raw.len() != PAYLOAD_LEN {
            return Err(AddressError::BadLength(owned()));
        }
        let mut hash = [0u8; 20];
        hash.copy_from_slice(&raw[..20]);
        let key_hash = KeyHash(hash);
        if raw[20..] != Self::checksum(prefix, &key_hash) {
            return Err(AddressError::BadChecksum(owned()));
        }
        Ok(Address { network, key_hash })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.network.address_prefix();
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.extend_from_slice(&self.key_hash.0);
        payload.extend_from_slice(&Self::checksum(prefix, &self.key_hash));
        write!(f, "{prefix}{}", bs58::encode(payload).into_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::keys::SecretKey;

    #[test]
    fn round_trips_and_rejects_with_distinct_errors() {
        let pk = SecretKey::generate().public_key();
        let a = Address::from_public_key(Network::Testnet, &pk);
        let text = a.to_string();
        assert!(text.starts_with("TIME0"));
        assert_eq!(Address::parse(&text, Network::Testnet), Ok(a));
        assert_eq!(
            Address::parse(&text, Network::Localnet).map(|a| a.key_hash),
            Ok(a.key_hash)
        );

        let main = Address::from_public_key(Network::Mainnet, &pk).to_string();
        assert!(main.starts_with("TIME1"));
        assert!(matches!(
            Address::parse(&main, Network::Testnet),
            Err(AddressError::WrongNetwork { .. })
        ));

        // Change one base58 character: the checksum catches it.
        let mut chars: Vec<char> = text.chars().collect();
        let i = 10;
        chars[i] = if chars[i] == '2' { '3' } else { '2' };
        let typo: String = chars.into_iter().collect();
        assert_eq!(
            Address::parse(&typo, Network::Testnet),
            Err(AddressError::BadChecksum(typo.clone()))
        );

        assert!(matches!(
            Address::parse("BTC1abc", Network::Testnet),
            Err(AddressError::UnknownPrefix(_))
        ));
        assert!(matches!(
            Address::parse("TIME0OOOO", Network::Testnet),
            Err(AddressError::NotBase58(_))
        ));
        assert!(matches!(
            Address::parse("TIME0abc", Network::Testnet),
            Err(AddressError::BadLength(_))
        ));
    }
}
