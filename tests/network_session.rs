//! Opening sessions over real TCP on loopback: a good handshake, another chain refused on
//! both sides, garbage or oversized frames refused while the listener keeps serving, a
//! captured proof refused by anyone else, and nothing injected or replayed into a session.

use futures_util::{SinkExt, StreamExt};
use timed::network::frame::{Frame, FrameCodec, FrameError, MAX_FRAME_BYTES};
use timed::network::handshake::{HandshakeError, LocalIdentity, Offer};
use timed::network::message::NetMessage;
use timed::network::session::{self, SessionError};
use timed::types::{Hash32, Network, SecretKey};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

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

/// A hostile peer's view of a connection: plain frames, written and read by hand.
type Raw = Framed<TcpStream, FrameCodec>;

async fn raw(addr: std::net::SocketAddr) -> Raw {
    Framed::new(TcpStream::connect(addr).await.unwrap(), FrameCodec)
}

async fn read_msg(conn: &mut Raw) -> NetMessage {
    let frame = conn.next().await.expect("a frame").expect("a good frame");
    NetMessage::from_frame(&frame).expect("a message")
}

#[tokio::test]
async fn a_captured_hello_and_proof_are_refused_by_another_node() {
    // H talks to masternode M as any node may, and keeps M's hello and proof.
    let (lm, addr_m) = listener().await;
    let m = SecretKey::from_bytes(&[11; 32]);
    let m_pub = m.public_key();
    let server_m = tokio::spawn(async move { serve_one(&lm, identity(11, 9), m).await });
    let h = SecretKey::from_bytes(&[12; 32]);
    let mut to_m = raw(addr_m).await;
    let offer = Offer::new(&identity(12, 9), &h, 0, NOW);
    to_m.send(NetMessage::Hello(offer.hello.clone()).to_frame())
        .await
        .unwrap();
    let NetMessage::Hello(m_hello) = read_msg(&mut to_m).await else {
        panic!("M's first message is its hello")
    };
    to_m.send(NetMessage::Proof(offer.prove(&h, &m_hello)).to_frame())
        .await
        .unwrap();
    let NetMessage::Proof(m_proof) = read_msg(&mut to_m).await else {
        panic!("M's second message is its proof")
    };
    assert_eq!(server_m.await.unwrap().unwrap(), h.public_key());

    // H replays them to N as if it were M: N's challenge and key are not in that proof.
    let (ln, addr_n) = listener().await;
    let server_n = tokio::spawn(async move {
        serve_one(&ln, identity(13, 9), SecretKey::from_bytes(&[13; 32])).await
    });
    let mut to_n = raw(addr_n).await;
    to_n.send(NetMessage::Hello(m_hello).to_frame())
        .await
        .unwrap();
    to_n.send(NetMessage::Proof(m_proof).to_frame())
        .await
        .unwrap();
    let err = server_n.await.unwrap().unwrap_err();
    assert!(
        matches!(err, SessionError::Refused(HandshakeError::BadSignature(k)) if k == m_pub),
        "{err}"
    );
    assert!(err.is_misbehaviour());
}

#[tokio::test]
async fn a_relay_of_a_genuine_handshake_cannot_inject_or_replay_frames() {
    // M dials what it believes is N; H relays the handshake between them frame by frame.
    let (ln, addr_n) = listener().await;
    let server_n = tokio::spawn(async move {
        let (stream, _) = ln.accept().await.unwrap();
        let (mut conn, hello) = session::open(
            stream,
            &identity(13, 9),
            &SecretKey::from_bytes(&[13; 32]),
            0,
            NOW,
        )
        .await
        .expect("the relayed handshake is genuine");
        let mut got = vec![hello.node_key.to_hex()];
        while let Some(r) = conn.next().await {
            match r {
                Ok(f) => got.push(format!("frame {}", f.kind)),
                Err(e) => {
                    got.push(format!("error {e}"));
                    assert!(matches!(e, FrameError::BadMac), "{e}");
                    assert!(
                        !e.is_peer_fault(),
                        "an injector must not get the peer banned"
                    );
                    break;
                }
            }
        }
        got
    });
    let (lh, addr_h) = listener().await;
    let m = SecretKey::from_bytes(&[11; 32]);
    let m_pub = m.public_key();
    let client_m = tokio::spawn(async move {
        let stream = TcpStream::connect(addr_h).await.unwrap();
        let (mut conn, _) = session::open(stream, &identity(11, 9), &m, 0, NOW)
            .await
            .expect("M's handshake through the relay");
        // One genuine frame, then M waits for the end.
        conn.send(NetMessage::Ping(7).to_frame()).await.unwrap();
        while conn.next().await.is_some() {}
    });
    let (from_m, _) = lh.accept().await.unwrap();
    let mut from_m = Framed::new(from_m, FrameCodec);
    let mut to_n = raw(addr_n).await;
    // Hellos, then proofs: each side sends its own as soon as it can.
    for _ in 0..2 {
        let a = from_m.next().await.unwrap().unwrap();
        to_n.send(a).await.unwrap();
        let b = to_n.next().await.unwrap().unwrap();
        from_m.send(b).await.unwrap();
    }
    // M's authenticated ping: forwarded once (accepted), then replayed (refused).
    let ping = from_m.next().await.unwrap().unwrap();
    to_n.send(ping.clone()).await.unwrap();
    to_n.send(ping).await.unwrap();
    let got = server_n.await.unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], m_pub.to_hex());
    assert_eq!(got[1], "frame 2", "the genuine ping passes");
    assert!(got[2].starts_with("error"), "{got:?}");
    drop((to_n, from_m));
    client_m.await.unwrap();
}

#[tokio::test]
async fn a_frame_injected_into_an_established_session_is_refused() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (stream, _) = l.accept().await.unwrap();
        let (mut conn, _) = session::open(
            stream,
            &identity(1, 9),
            &SecretKey::from_bytes(&[1; 32]),
            0,
            NOW,
        )
        .await
        .unwrap();
        let first = conn.next().await.unwrap();
        let second = conn.next().await.unwrap();
        (first.map(|f| f.kind), second.map(|f| f.kind))
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut conn, _) = session::open(
        stream,
        &identity(2, 9),
        &SecretKey::from_bytes(&[2; 32]),
        0,
        NOW,
    )
    .await
    .unwrap();
    conn.send(NetMessage::Ping(1).to_frame()).await.unwrap();
    // Bytes written under the session's framing but without its key: what anyone able to
    // write into the TCP stream could produce.
    let mut forged = bytes::BytesMut::new();
    tokio_util::codec::Encoder::encode(
        &mut FrameCodec,
        Frame {
            kind: 2,
            body: vec![0; 24],
        },
        &mut forged,
    )
    .unwrap();
    conn.get_mut().write_all(&forged).await.unwrap();
    let (first, second) = server.await.unwrap();
    assert_eq!(first.unwrap(), 2);
    assert!(matches!(second, Err(FrameError::BadMac)), "{second:?}");
}
