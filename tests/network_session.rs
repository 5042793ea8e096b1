//! Opening sessions over real TCP on loopback: a good handshake, another chain refused on
//! both sides, and garbage or oversized frames refused while the listener keeps serving.

use timed::network::frame::{FrameError, MAX_FRAME_BYTES};
use timed::network::handshake::{HandshakeError, LocalIdentity};
use timed::network::session::{self, SessionError};
use timed::types::{Hash32, Network, SecretKey};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const NOW: u64 = 1_700_000_000_000;

fn identity(nonce: u64, genesis: u8) -> LocalIdentity {
    LocalIdentity {
        network: Network::Localnet,
        genesis: Hash32([genesis; 32]),
        listen_addr: String::new(),
        nonce,
    }
}

async fn listener() -> (TcpListener, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Accepts one connection and runs the handshake as node `server`.
async fn serve_one(
    l: &TcpListener,
    me: LocalIdentity,
    key: SecretKey,
) -> Result<timed::types::PublicKey, SessionError> {
    let (stream, _) = l.accept().await.unwrap();
    session::open(stream, &me, &key, 5, NOW)
        .await
        .map(|(_, hello)| hello.node_key)
}

#[tokio::test]
async fn two_nodes_learn_each_others_keys() {
    let (l, addr) = listener().await;
    let a = SecretKey::from_bytes(&[1; 32]);
    let b = SecretKey::from_bytes(&[2; 32]);
    let server = tokio::spawn({
        let a = a.clone();
        async move { serve_one(&l, identity(1, 9), a).await }
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let (_, hello) = session::open(stream, &identity(2, 9), &b, 7, NOW)
        .await
        .unwrap();
    assert_eq!(hello.node_key, a.public_key());
    assert_eq!(hello.best_height, 5);
    assert_eq!(server.await.unwrap().unwrap(), b.public_key());
}

#[tokio::test]
async fn another_chain_is_refused_on_both_sides() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        serve_one(&l, identity(1, 9), SecretKey::from_bytes(&[1; 32])).await
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let err = session::open(
        stream,
        &identity(2, 8),
        &SecretKey::from_bytes(&[2; 32]),
        0,
        NOW,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Refused(HandshakeError::WrongGenesis { .. })
        ),
        "{err}"
    );
    assert!(!err.is_misbehaviour());
    let err = server.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Refused(HandshakeError::WrongGenesis { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("another chain"), "{err}");
}

#[tokio::test]
async fn garbage_and_oversized_frames_are_refused_and_the_listener_keeps_serving() {
    let (l, addr) = listener().await;
    let key = SecretKey::from_bytes(&[1; 32]);
    let server = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..3 {
            results.push(serve_one(&l, identity(1, 9), key.clone()).await);
        }
        results
    });
    // 1: a well-framed message of an unknown type instead of a hello.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 5, 200, 0, 1, 2, 3]).await.unwrap();
    // 2: a length far beyond the limit.
    let mut s2 = TcpStream::connect(addr).await.unwrap();
    s2.write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    // 3: an honest node afterwards.
    let honest = TcpStream::connect(addr).await.unwrap();
    let ok = session::open(
        honest,
        &identity(2, 9),
        &SecretKey::from_bytes(&[2; 32]),
        0,
        NOW,
    )
    .await;
    let results = server.await.unwrap();
    assert!(
        matches!(&results[0], Err(e) if e.is_misbehaviour()),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(
            &results[1],
            Err(SessionError::Frame(FrameError::TooLarge { .. }))
        ),
        "{:?}",
        results[1]
    );
    assert!(results[2].is_ok());
    assert!(ok.is_ok());
    drop((s, s2));
}
