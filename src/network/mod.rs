//! The P2P network: framing and (to come) handshake, peers, gossip and sync.

pub mod frame;
