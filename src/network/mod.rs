//! The P2P network: framing, the challenge-response handshake and authenticated frames, messages, peer tasks with priority queues
//! and rate limits, the peer registry, gossip deduplication, and the connection manager that
//! dials masternodes, routes sync requests and carries consensus messages.

pub mod auth;
pub mod clock;
pub mod eviction;
pub mod frame;
pub mod gossip;
pub mod handshake;
pub mod manager;
pub mod message;
pub mod peer;
pub mod peers;
pub mod session;
pub mod sync_server;
pub mod tx_relay;
