//! The handshake: who each side is, which chain it follows, and proof that it holds its node
//! key, given to this receiver, on this connection.
//!
//! ```text
//! A ── Hello{key_A, challenge_A, ephemeral_A, ...} ──►        (both sides send first)
//!   ◄── Hello{key_B, challenge_B, ephemeral_B, ...} ── B
//! A ── Proof: sign_A(transcript, receiver key_B) ──►
//!   ◄── Proof: sign_B(transcript, receiver key_A) ── B
//! ```
//!
//! The transcript hashes both hellos, so each proof covers both sides' fresh random
//! challenges, both ephemeral X25519 keys, the network id and the genesis hash; it also names
//! the receiver's key. A proof captured from one connection is therefore worthless on any
//! other: another receiver, or the same receiver later, has drawn another challenge. What
//! follows the handshake is authenticated frame by frame with keys derived from the ephemeral
//! Diffie-Hellman secret and the transcript ([`super::auth`]), so a relay that forwards a
//! genuine handshake learns nothing it could use to inject, reorder or replay a frame.
//!
//! Checked in this order: version, network id and genesis (a node of another chain is turned
//! away with a log line naming both), the listen address, the clock; then the proof; only
//! after the proof, the instance nonce (equal to ours: we dialled ourselves), so nobody can
//! make us believe a connection is to ourselves without holding a key.

use super::auth::SessionKeys;
use crate::types::hash::Hash32;
use crate::types::{codec, BlockHash, Canonical, Network, PublicKey, SecretKey, Signature};
use bincode::{Decode, Encode};
use curve25519_dalek::montgomery::MontgomeryPoint;

/// The protocol version this node speaks, and the oldest it accepts. Version 2 introduced the
/// challenge-response proof and authenticated frames; version 1 peers cannot talk to it.
pub const PROTOCOL_VERSION: u32 = 2;
pub const MIN_PROTOCOL_VERSION: u32 = 2;
/// Longest listen address a hello may carry.
pub const MAX_LISTEN_ADDR_LEN: usize = 255;
/// How far a hello's timestamp may be from our clock (a sanity check of the peer's clock;
/// freshness comes from the challenges).
pub const MAX_HELLO_SKEW_MS: u64 = 5 * 60 * 1000;

/// Domain tags of the handshake's hashes.
const TRANSCRIPT_TAG: &str = "timecoin/p2p-transcript/v2";
const PROOF_TAG: &str = "timecoin/p2p-proof/v2";

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    pub version: u32,
    pub network_id: [u8; 4],
    pub genesis: BlockHash,
    pub node_key: PublicKey,
    /// Where this node accepts connections (`host:port`), empty if it does not.
    pub listen_addr: String,
    pub best_height: u64,
    /// Random per process: a proven hello carrying ours came from ourselves, and a new value
    /// for a key means that node restarted.
    pub instance: u64,
    /// Random per connection: what the other side's proof must cover.
    pub challenge: [u8; 32],
    /// Ephemeral X25519 public key of this connection, for the session keys.
    pub ephemeral: [u8; 32],
    pub timestamp_ms: u64,
}

crate::canonical!(Hello, "hello", 1024);

/// A side's signature over the transcript and the receiver's key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proof {
    pub signature: Signature,
}

crate::canonical!(Proof, "proof", 128);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("peer speaks protocol version {got}, this node needs at least {min}")]
    OldVersion { got: u32, min: u32 },
    #[error("peer is on another network (id {got:?}, this node runs {expected})")]
    WrongNetwork { expected: Network, got: [u8; 4] },
    #[error("peer follows another chain: genesis {got}, ours is {expected}")]
    WrongGenesis { expected: BlockHash, got: BlockHash },
    #[error("connected to ourselves (same instance nonce)")]
    SelfConnection,
    #[error("peer's proof does not verify under its key {0} for this connection")]
    BadSignature(PublicKey),
    #[error("peer's listen address is {0} bytes long")]
    BadListenAddr(usize),
    #[error("peer's clock is {skew_ms} ms away from ours (limit {max_ms} ms)")]
    ClockSkew { skew_ms: u64, max_ms: u64 },
    #[error("peer's ephemeral key gives no shared secret (a low-order point)")]
    WeakEphemeral,
}

impl HandshakeError {
    /// Whether the peer should be punished, not just disconnected: a forged proof or a
    /// malformed hello is malice; another chain, an old version or a wrong clock are honest
    /// mistakes.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            HandshakeError::BadSignature(_)
                | HandshakeError::BadListenAddr(_)
                | HandshakeError::WeakEphemeral
        )
    }
}

/// What this node says about itself in every hello.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    pub network: Network,
    pub genesis: BlockHash,
    pub listen_addr: String,
    /// Random per process: a proven hello carrying it came from ourselves.
    pub nonce: u64,
}

/// This side of one handshake: its hello and the secrets behind it (never sent).
pub struct Offer {
    pub hello: Hello,
    ephemeral_secret: [u8; 32],
}

impl Offer {
    /// Draws this connection's challenge and ephemeral key and builds the hello.
    pub fn new(me: &LocalIdentity, key: &SecretKey, best_height: u64, now_ms: u64) -> Offer {
        let ephemeral_secret: [u8; 32] = rand::random();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            network_id: me.network.id(),
            genesis: me.genesis,
            node_key: key.public_key(),
            listen_addr: me.listen_addr.clone(),
            best_height,
            instance: me.nonce,
            challenge: rand::random(),
            ephemeral: MontgomeryPoint::mul_base_clamped(ephemeral_secret).to_bytes(),
            timestamp_ms: now_ms,
        };
        Offer {
            hello,
            ephemeral_secret,
        }
    }

    /// This side's proof for the peer that sent `theirs`.
    pub fn prove(&self, key: &SecretKey, theirs: &Hello) -> Proof {
        let t = transcript(&self.hello, theirs);
        Proof {
            signature: key.sign(&proof_message(&t, &theirs.node_key).0),
        }
    }

    /// Checks the peer's proof, then the instance nonce, and derives the session keys.
    pub fn accept(
        &self,
        me: &LocalIdentity,
        theirs: &Hello,
        proof: &Proof,
    ) -> Result<SessionKeys, HandshakeError> {
        let t = transcript(&self.hello, theirs);
        let msg = proof_message(&t, &self.hello.node_key);
        if !crate::types::signature::verify(&theirs.node_key, &msg.0, &proof.signature) {
            return Err(HandshakeError::BadSignature(theirs.node_key));
        }
        if theirs.instance == me.nonce {
            return Err(HandshakeError::SelfConnection);
        }
        let shared = MontgomeryPoint(theirs.ephemeral)
            .mul_clamped(self.ephemeral_secret)
            .to_bytes();
        if shared == [0; 32] {
            return Err(HandshakeError::WeakEphemeral);
        }
        Ok(SessionKeys::derive(
            &shared,
            &t,
            &self.hello.ephemeral,
            &theirs.ephemeral,
        ))
    }
}

/// Both hellos, in an order both sides agree on without knowing who dialled.
fn transcript(a: &Hello, b: &Hello) -> Hash32 {
    let (a, b) = (a.to_bytes(), b.to_bytes());
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut h = Hash32::hasher(TRANSCRIPT_TAG);
    codec::encode_into(&first, &mut h);
    codec::encode_into(&second, &mut h);
    Hash32::from_hasher(&h)
}

/// What a proof signs: the transcript and the key of the side it is given to.
fn proof_message(transcript: &Hash32, receiver: &PublicKey) -> Hash32 {
    let mut h = Hash32::hasher(PROOF_TAG);
    h.update(&transcript.0);
    codec::encode_into(receiver, &mut h);
    Hash32::from_hasher(&h)
}

impl Hello {
    /// Checks what a peer's hello says before its proof arrives: version, chain, address
    /// length and clock.
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
        if self.listen_addr.len() > MAX_LISTEN_ADDR_LEN {
            return Err(HandshakeError::BadListenAddr(self.listen_addr.len()));
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
    fn a_good_exchange_gives_matching_session_keys() {
        let (ka, kb) = (
            SecretKey::from_bytes(&[5; 32]),
            SecretKey::from_bytes(&[6; 32]),
        );
        let (ia, ib) = (identity(1), identity(2));
        let a = Offer::new(&ia, &ka, 10, NOW);
        let b = Offer::new(&ib, &kb, 11, NOW);
        assert_eq!(Hello::from_bytes(&a.hello.to_bytes()), Ok(a.hello.clone()));
        assert_eq!(b.hello.check(&ia, NOW + 1_000), Ok(()));
        let keys_a = a.accept(&ia, &b.hello, &b.prove(&kb, &a.hello)).unwrap();
        let keys_b = b.accept(&ib, &a.hello, &a.prove(&ka, &b.hello)).unwrap();
        assert_eq!(keys_a.send, keys_b.recv);
        assert_eq!(keys_a.recv, keys_b.send);
        assert_ne!(keys_a.send, keys_a.recv);
    }

    #[test]
    fn a_proof_is_worthless_to_another_receiver_or_connection() {
        let (km, kh, kn) = (
            SecretKey::from_bytes(&[5; 32]),
            SecretKey::from_bytes(&[6; 32]),
            SecretKey::from_bytes(&[7; 32]),
        );
        // M proves itself to H on one connection.
        let m = Offer::new(&identity(1), &km, 10, NOW);
        let h = Offer::new(&identity(2), &kh, 0, NOW);
        let captured = m.prove(&km, &h.hello);
        // H replays M's hello and proof to N: N's challenge and key differ.
        let n = Offer::new(&identity(3), &kn, 0, NOW);
        assert_eq!(
            n.accept(&identity(3), &m.hello, &captured),
            Err(HandshakeError::BadSignature(km.public_key()))
        );
        // Nor does it work back at H on a later connection.
        let h2 = Offer::new(&identity(2), &kh, 0, NOW);
        assert!(h2.accept(&identity(2), &m.hello, &captured).is_err());
    }

    #[test]
    fn each_mismatch_has_its_own_error() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let hello = Offer::new(&identity(1), &key, 10, NOW).hello;
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
        assert!(matches!(
            hello.check(&identity(2), NOW + MAX_HELLO_SKEW_MS + 1),
            Err(HandshakeError::ClockSkew { .. })
        ));
        let mut old = hello.clone();
        old.version = 1;
        assert!(matches!(
            old.check(&identity(2), NOW),
            Err(HandshakeError::OldVersion { .. })
        ));
    }

    #[test]
    fn self_connection_is_seen_only_after_the_proof() {
        let key = SecretKey::from_bytes(&[5; 32]);
        let me = identity(1);
        let out = Offer::new(&me, &key, 0, NOW);
        let inb = Offer::new(&me, &key, 0, NOW);
        assert_eq!(
            out.accept(&me, &inb.hello, &inb.prove(&key, &out.hello)),
            Err(HandshakeError::SelfConnection)
        );
        // Someone else's hello claiming our instance but without a valid proof is a forgery.
        let other = SecretKey::from_bytes(&[8; 32]);
        let mut fake = Offer::new(&me, &other, 0, NOW);
        fake.hello.node_key = SecretKey::from_bytes(&[9; 32]).public_key();
        let err = out
            .accept(&me, &fake.hello, &fake.prove(&other, &out.hello))
            .unwrap_err();
        assert!(err.is_misbehaviour(), "{err}");
    }

    #[test]
    fn a_low_order_ephemeral_is_refused() {
        let (ka, kb) = (
            SecretKey::from_bytes(&[5; 32]),
            SecretKey::from_bytes(&[6; 32]),
        );
        let a = Offer::new(&identity(1), &ka, 0, NOW);
        let mut b = Offer::new(&identity(2), &kb, 0, NOW);
        b.hello.ephemeral = [0; 32];
        let proof = b.prove(&kb, &a.hello);
        assert_eq!(
            a.accept(&identity(1), &b.hello, &proof),
            Err(HandshakeError::WeakEphemeral)
        );
    }
}
