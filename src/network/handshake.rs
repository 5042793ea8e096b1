//! The first message each side sends: who it is, which chain it follows, and proof that it
//! holds its node key.
//!
//! Checked before anything else is accepted from a connection: the network id and genesis
//! hash must match (a node of another chain is turned away with a log line naming both), the
//! signature must verify under the announced key, a nonce equal to our own means we dialled
//! ourselves, and the timestamp must be recent (a replayed hello is refused).

use crate::types::hash::{tag, Hash32};
use crate::types::{codec, BlockHash, Network, PublicKey, SecretKey, Signature};
use bincode::{Decode, Encode};

/// The protocol version this node speaks, and the oldest it accepts.
pub const PROTOCOL_VERSION: u32 = 1;
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Longest listen address a hello may carry.
pub const MAX_LISTEN_ADDR_LEN: usize = 255;
/// How far a hello's timestamp may be from our clock.
pub const MAX_HELLO_SKEW_MS: u64 = 5 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    pub version: u32,
    pub network_id: [u8; 4],
    pub genesis: BlockHash,
    pub node_key: PublicKey,
    /// Where this node accepts connections (`host:port`), empty if it does not.
    pub listen_addr: String,
    pub best_height: u64,
    pub nonce: u64,
    pub timestamp_ms: u64,
    pub signature: Signature,
}

crate::canonical!(Hello, "hello", 1024);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("peer speaks protocol version {got}, this node needs at least {min}")]
    OldVersion { got: u32, min: u32 },
    #[error("peer is on another network (id {got:?}, this node runs {expected})")]
    WrongNetwork { expected: Network, got: [u8; 4] },
    #[error("peer follows another chain: genesis {got}, ours is {expected}")]
    WrongGenesis { expected: BlockHash, got: BlockHash },
    #[error("connected to ourselves (same nonce)")]
    SelfConnection,
    #[error("peer's hello signature does not verify under its key {0}")]
    BadSignature(PublicKey),
    #[error("peer's listen address is {0} bytes long")]
    BadListenAddr(usize),
    #[error("peer's clock is {skew_ms} ms away from ours (limit {max_ms} ms)")]
    ClockSkew { skew_ms: u64, max_ms: u64 },
}

impl HandshakeError {
    /// Whether the peer should be banned, not just disconnected: a forged signature is
    /// malice; another chain, an old version or a wrong clock are honest mistakes.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            HandshakeError::BadSignature(_) | HandshakeError::BadListenAddr(_)
        )
    }
}

/// What this node says about itself in every hello.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    pub network: Network,
    pub genesis: BlockHash,
    pub listen_addr: String,
    /// Random per process: a hello carrying it came from ourselves.
    pub nonce: u64,
}

impl Hello {
    fn body_hash(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::HELLO);
        codec::encode_into(&self.version, &mut h);
        codec::encode_into(&self.network_id, &mut h);
        codec::encode_into(&self.genesis, &mut h);
        codec::encode_into(&self.node_key, &mut h);
        codec::encode_into(&self.listen_addr, &mut h);
        codec::encode_into(&self.best_height, &mut h);
        codec::encode_into(&self.nonce, &mut h);
        codec::encode_into(&self.timestamp_ms, &mut h);
        Hash32::from_hasher(&h)
    }

    /// Builds and signs this node's hello.
    pub fn new(me: &LocalIdentity, key: &SecretKey, best_height: u64, now_ms: u64) -> Hello {
        let mut hello = Hello {
            version: PROTOCOL_VERSION,
            network_id: me.network.id(),
            genesis: me.genesis,
            node_key: key.public_key(),
            listen_addr: me.listen_addr.clone(),
            best_height,
            nonce: me.nonce,
            timestamp_ms: now_ms,
            signature: Signature([0; 64]),
        };
        hello.signature = key.sign(&hello.body_hash().0);
        hello
    }

    /// Checks a peer's hello against this node's identity and clock.
    pub fn check(&self, me: &LocalIdentity, now_ms: u64) -> Result<(), HandshakeError> {
        if self.version < MIN_PROTOCOL_VERSION {
            return Err(HandshakeError::OldVersion {
                got: self.version,
                min: MIN_PROTOCOL_VERSION,
            });
        }
        if self.network_id != me.network.id() {
            return Err(HandshakeError::WrongNetwork {
                expected: me.network,
                got: self.network_id,
            });
        }
        if self.genesis != me.genesis {
            return Err(HandshakeError::WrongGenesis {
                expected: me.genesis,
                got: self.genesis,
            });
        }
        if self.nonce == me.nonce {
            return Err(HandshakeError::SelfConnection);
        }
        if self.listen_addr.len() > MAX_LISTEN_ADDR_LEN {
            return Err(HandshakeError::BadListenAddr(self.listen_addr.len()));
        }
        if !crate::types::signature::verify(&self.node_key, &self.body_hash().0, &self.signature) {
            return Err(HandshakeError::BadSignature(self.node_key));
        }
        let skew_ms = self.timestamp_ms.abs_diff(now_ms);
        if skew_ms > MAX_HELLO_SKEW_MS {
            return Err(HandshakeError::ClockSkew {
                skew_ms,
                max_ms: MAX_HELLO_SKEW_MS,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Canonical;

    const NOW: u64 = 1_700_000_000_000;

    fn identity(nonce: u64) -> LocalIdentity {
        LocalIdentity {
            network: Network::Localnet,
            genesis: Hash32([1; 32]),
            listen_addr: "127.0.0.1:24200".into(),
            nonce,
        }
    }

    #[test]
    fn a_good_hello_passes_and_round_trips() {
        let hello = Hello::new(&identity(1), &SecretKey::from_bytes(&[5; 32]), 10, NOW);
        assert_eq!(Hello::from_bytes(&hello.to_bytes()), Ok(hello.clone()));
        assert_eq!(hello.check(&identity(2), NOW + 1_000), Ok(()));
    }

    #[test]
    fn each_mismatch_has_its_own_error() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let hello = Hello::new(&identity(1), &key, 10, NOW);
        let mut other_net = identity(2);
        other_net.network = Network::Testnet;
        assert!(matches!(
            hello.check(&other_net, NOW),
            Err(HandshakeError::WrongNetwork { .. })
        ));
        let mut other_chain = identity(2);
        other_chain.genesis = Hash32([2; 32]);
        let err = hello.check(&other_chain, NOW).unwrap_err();
        assert!(matches!(err, HandshakeError::WrongGenesis { .. }));
        assert!(!err.is_misbehaviour());
        assert_eq!(
            hello.check(&identity(1), NOW),
            Err(HandshakeError::SelfConnection)
        );
        let mut forged = hello.clone();
        forged.best_height = 1_000_000;
        let err = forged.check(&identity(2), NOW).unwrap_err();
        assert!(matches!(err, HandshakeError::BadSignature(_)));
        assert!(err.is_misbehaviour());
        assert!(matches!(
            hello.check(&identity(2), NOW + MAX_HELLO_SKEW_MS + 1),
            Err(HandshakeError::ClockSkew { .. })
        ));
        let mut old = Hello::new(&identity(1), &key, 10, NOW);
        old.version = 0;
        assert!(matches!(
            old.check(&identity(2), NOW),
            Err(HandshakeError::OldVersion { .. })
        ));
    }
}
