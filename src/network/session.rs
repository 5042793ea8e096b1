//! Opening a session on a TCP stream: framing, then the handshake, bounded in time.
//!
//! Both sides send their hello first and then read the other's, so neither waits on the other;
//! then both send their proof and read the other's ([`super::handshake`]). From then on every
//! frame is authenticated ([`super::auth`]). Any failure (a slow peer, garbage instead of a
//! frame, another chain, a proof made for someone else) ends the attempt with an error that
//! says what happened; the caller logs it and decides on a ban.

use super::auth::SessionCodec;
use super::frame::{Frame, FrameError, RawFrame};
use super::handshake::{HandshakeError, Hello, LocalIdentity, Offer};
use super::message::{MessageError, NetMessage};
use crate::types::SecretKey;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a peer has to complete the hello exchange.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Connection = Framed<TcpStream, SessionCodec>;

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
    #[error("peer's second message was not its proof")]
    NotProof,
    #[error("handshake refused: {0}")]
    Refused(#[from] HandshakeError),
}

impl SessionError {
    /// Whether the peer broke the protocol (as opposed to being slow, gone, or elsewhere).
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            SessionError::Frame(e) => e.is_peer_fault(),
            SessionError::Message(_) | SessionError::NotHello | SessionError::NotProof => true,
            SessionError::Refused(e) => e.is_misbehaviour(),
            SessionError::Timeout(_) | SessionError::Closed => false,
        }
    }
}

/// Runs the handshake on `stream`; returns the authenticated connection and the peer's
/// proven hello.
pub async fn open(
    stream: TcpStream,
    me: &LocalIdentity,
    key: &SecretKey,
    best_height: u64,
    now_ms: u64,
) -> Result<(Connection, Hello), SessionError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, SessionCodec::default());
    let exchange = async {
        let offer = Offer::new(me, key, best_height, now_ms);
        conn.send(NetMessage::Hello(offer.hello.clone()).to_frame())
            .await?;
        let theirs = match NetMessage::from_frame(&next(&mut conn).await?)? {
            NetMessage::Hello(h) => h,
            _ => return Err(SessionError::NotHello),
        };
        theirs.check(me, now_ms)?;
        conn.send(NetMessage::Proof(offer.prove(key, &theirs)).to_frame())
            .await?;
        let proof = match NetMessage::from_frame(&next(&mut conn).await?)? {
            NetMessage::Proof(p) => p,
            _ => return Err(SessionError::NotProof),
        };
        let keys = offer.accept(me, &theirs, &proof)?;
        conn.codec_mut().install(&keys);
        Ok(theirs)
    };
    let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| SessionError::Timeout(HANDSHAKE_TIMEOUT))??;
    Ok((conn, theirs))
}

async fn next(conn: &mut Connection) -> Result<Frame, SessionError> {
    Ok(read_frame(conn).await.ok_or(SessionError::Closed)??)
}

/// The next frame of `conn`, decompressed at once: for a side that trusts its peer's rate
/// (the handshake's two small frames, a test's client). A node's peer reader instead
/// decompresses only frames within the peer's rate limit (`peer::run`).
pub async fn read_frame(conn: &mut Connection) -> Option<Result<Frame, FrameError>> {
    Some(conn.next().await?.and_then(RawFrame::finish))
}
