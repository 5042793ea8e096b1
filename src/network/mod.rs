//! The P2P network. Built so far: framing of the stream and the signed handshake; peers,
//! gossip, sync and the connection manager are the daemon issue's remaining work.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod session;
