//! Opening a session on a TCP stream: framing, then the hello exchange, bounded in time.
//!
//! Both sides send their hello first and then read the other's, so neither waits on the other.
//! Any failure (a slow peer, garbage instead of a frame, another chain) ends the attempt with
//! an error that says what happened; the caller logs it and decides on a ban.

use super::frame::{FrameCodec, FrameError};
use super::handshake::{HandshakeError, Hello, LocalIdentity};
use super::message::{MessageError, NetMessage};
use crate::types::SecretKey;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a peer has to complete the hello exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Connection = Framed<TcpStream, FrameCodec>;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("peer did not complete the handshake within {0:?}")]
    Timeout(Duration),
    #[error("peer closed the connection during the handshake")]
    Closed,
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    #[error("message: {0}")]
    Message(#[from] MessageError),
    #[error("peer's first message was not a hello")]
    NotHello,
    #[error("handshake refused: {0}")]
    Refused(#[from] HandshakeError),
}

impl SessionError {
    /// Whether the peer broke the protocol (as opposed to being slow, gone, or elsewhere).
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            SessionError::Frame(e) => e.is_peer_fault(),
            SessionError::Message(_) | SessionError::NotHello => true,
            SessionError::Refused(e) => e.is_misbehaviour(),
            SessionError::Timeout(_) | SessionError::Closed => false,
        }
    }
}

/// Exchanges hellos on `stream`; returns the framed connection and the peer's verified hello.
pub async fn open(
    stream: TcpStream,
    me: &LocalIdentity,
    key: &SecretKey,
    best_height: u64,
    now_ms: u64,
) -> Result<(Connection, Hello), SessionError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, FrameCodec);
    let exchange = async {
        let hello = Hello::new(me, key, best_height, now_ms);
        conn.send(NetMessage::Hello(hello).to_frame()).await?;
        let frame = conn.next().await.ok_or(SessionError::Closed)??;
        match NetMessage::from_frame(&frame)? {
            NetMessage::Hello(theirs) => {
                theirs.check(me, now_ms)?;
                Ok(theirs)
            }
            _ => Err(SessionError::NotHello),
        }
    };
    let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| SessionError::Timeout(HANDSHAKE_TIMEOUT))??;
    Ok((conn, theirs))
}
