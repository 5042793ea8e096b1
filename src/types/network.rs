//! Which TimeCoin network a value belongs to.
//!
//! The network id is mixed into every signature and the prefix into every address, so a
//! transaction or an address made for one network can never be replayed on another.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A TimeCoin network. Testnet and localnet share the `TIME0` address prefix (like Bitcoin's
/// testnet and regtest), but have distinct network ids, so their signatures never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
    Localnet,
}

impl Network {
    pub const ALL: [Network; 3] = [Network::Mainnet, Network::Testnet, Network::Localnet];

    /// Four bytes that every signature covers, and that the handshake compares.
    pub fn id(self) -> [u8; 4] {
        match self {
            Network::Mainnet => *b"TMC1",
            Network::Testnet => *b"TMC0",
            Network::Localnet => *b"TMCL",
        }
    }

    /// The address prefix: `TIME1` on mainnet, `TIME0` elsewhere.
    pub fn address_prefix(self) -> &'static str {
        match self {
            Network::Mainnet => "TIME1",
            Network::Testnet | Network::Localnet => "TIME0",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Localnet => "localnet",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown network {0:?}: expected mainnet, testnet or localnet")]
pub struct UnknownNetwork(pub String);

impl FromStr for Network {
    type Err = UnknownNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mainnet" | "main" => Ok(Network::Mainnet),
            "testnet" | "test" => Ok(Network::Testnet),
            "localnet" | "local" | "regtest" => Ok(Network::Localnet),
            other => Err(UnknownNetwork(other.to_string())),
        }
    }
}
