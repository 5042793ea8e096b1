//! The P2P network. Built so far: framing of the stream, the signed handshake, messages, the
//! session opener and the peer registry. Peer tasks (read/write loops with priority queues and
//! rate limits), gossip, sync and the connection manager are the daemon issue's remaining work.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod peers;
pub mod session;
