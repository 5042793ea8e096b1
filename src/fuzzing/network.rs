//! Targets for the P2P transport: the frame layer with its LZ4 bodies and the handshake.

use crate::network::auth::{SessionCodec, SessionKeys};
use crate::network::frame::{Frame, FrameCodec, RawFrame};
use crate::network::handshake::{Hello, LocalIdentity, Offer, Proof};
use crate::types::{Canonical, Hash32, Network, SecretKey};
use bytes::BytesMut;
use std::sync::OnceLock;
use tokio_util::codec::{Decoder, Encoder};

/// Frames decoded from one stream before the target stops (a stream of tiny frames would
/// otherwise make one input cost as much as thousands).
const MAX_FRAMES: usize = 64;
/// Frames an input may describe for the authenticated round trip.
const MAX_SENT_FRAMES: usize = 16;
/// A fixed "now" for the handshake's clock check.
const NOW_MS: u64 = 1_800_000_000_000;

/// Bytes as they come off a peer's socket, cut into frames by the codec the node reads with,
/// before and after the session is authenticated. Properties: what decodes re-encodes to a
/// frame that decodes to the same frame; a frame's cost is known before it is decompressed,
/// is at least its wire size and covers what it expands to; and frames an honest sender
/// writes under session keys always pass the receiver's authentication.
pub fn frame(data: &[u8]) {
    let mut plain = BytesMut::from(data);
    for _ in 0..MAX_FRAMES {
        match FrameCodec.decode(&mut plain) {
            Ok(Some(f)) => assert_eq!(round_trip(&f), f, "a frame changed in a round trip"),
            Ok(None) | Err(_) => break,
        }
    }
    let mut session = SessionCodec::default();
    let mut stream = BytesMut::from(data);
    for _ in 0..MAX_FRAMES {
        match session.decode(&mut stream) {
            Ok(Some(raw)) => check_cost(raw),
            Ok(None) | Err(_) => break,
        }
    }
    authenticated_round_trip(data);
}

fn round_trip(f: &Frame) -> Frame {
    let mut buf = BytesMut::new();
    match FrameCodec.encode(f.clone(), &mut buf) {
        Ok(()) => {}
        // A decoded frame is never over the limit, so neither is its re-encoding.
        Err(e) => panic!("a decoded frame does not encode: {e}"),
    }
    match FrameCodec.decode(&mut buf) {
        Ok(Some(again)) => again,
        other => panic!("a re-encoded frame does not decode: {other:?}"),
    }
}

fn check_cost(raw: RawFrame) {
    let wire = raw.wire_len;
    let compressed = raw.is_compressed();
    let cost = raw.checked_cost();
    if let Ok(c) = &cost {
        assert!(
            *c >= wire,
            "a frame costs {c}, less than its {wire} wire bytes"
        );
    }
    if let Ok(f) = raw.finish() {
        let Ok(c) = cost else {
            panic!("a frame refused by its cost check still decompressed");
        };
        if compressed {
            assert!(c >= f.body.len() + 6, "a frame expanded past its cost {c}");
        }
    }
}

/// The input as a list of frames (type byte, length byte, body) written by one side of an
/// authenticated session and read by the other.
fn authenticated_round_trip(data: &[u8]) {
    let keys = SessionKeys::derive(&[1; 32], &Hash32([2; 32]), &[3; 32], &[4; 32]);
    let mirror = SessionKeys {
        send: keys.recv,
        recv: keys.send,
    };
    let (mut tx, mut rx) = (SessionCodec::default(), SessionCodec::default());
    tx.install(&keys);
    rx.install(&mirror);
    let mut sent = Vec::new();
    let mut wire = BytesMut::new();
    let mut rest = data;
    while let [kind, len, tail @ ..] = rest {
        // Lengths scaled up so that some bodies pass the compression threshold.
        let want = usize::from(*len) * 16;
        let body: Vec<u8> = tail.iter().copied().cycle().take(want).collect();
        rest = &tail[tail.len().min(usize::from(*len))..];
        let f = Frame { kind: *kind, body };
        if tx.encode(f.clone(), &mut wire).is_ok() {
            sent.push(f);
        }
        if sent.len() == MAX_SENT_FRAMES {
            break;
        }
    }
    for f in sent {
        let raw = match rx.decode(&mut wire) {
            Ok(Some(raw)) => raw,
            other => panic!("an authenticated frame was refused: {other:?}"),
        };
        match raw.finish() {
            Ok(got) => assert_eq!(got, f, "an authenticated frame changed"),
            Err(e) => panic!("an authenticated frame does not finish: {e}"),
        }
    }
    assert!(wire.is_empty(), "bytes left after every frame was read");
}

/// Who the handshake target is.
fn identity() -> LocalIdentity {
    LocalIdentity {
        network: Network::Localnet,
        genesis: Hash32([9; 32]),
        listen_addr: "127.0.0.1:24200".into(),
        nonce: 42,
    }
}

/// Our side of the handshake, drawn once per process (an X25519 key generation per input
/// would halve the rate and cover nothing new).
fn our_offer() -> &'static Offer {
    static OFFER: OnceLock<Offer> = OnceLock::new();
    OFFER.get_or_init(|| Offer::new(&identity(), &SecretKey::from_bytes(&[7; 32]), 0, NOW_MS))
}

/// A peer's hello and proof (two pieces, [`super::split_pieces`]), put through the checks an
/// inbound connection makes, in order. The proof in the input almost never verifies, so the
/// target also re-signs the peer's hello with a key it knows: property: a correct proof over
/// any hello is accepted (unless the hello claims our own instance nonce, or its ephemeral
/// key is weak), and a hello that decodes re-encodes to the same bytes.
pub fn handshake(data: &[u8]) {
    let pieces = super::split_pieces(data);
    let (Some(hello_bytes), proof_bytes) = (pieces.first(), pieces.get(1)) else {
        return;
    };
    let Ok(theirs) = Hello::from_bytes(hello_bytes) else {
        return;
    };
    assert_eq!(
        &theirs.to_bytes(),
        hello_bytes,
        "a hello re-encodes differently"
    );
    let me = identity();
    let mine = our_offer();
    let checked = theirs.check(&me, NOW_MS);
    if let Err(e) = &checked {
        let _ = e.is_misbehaviour();
    }
    if let Some(Ok(proof)) = proof_bytes.map(|p| Proof::from_bytes(p)) {
        let _ = mine.accept(&me, &theirs, &proof);
    }
    // The same hello from a peer that holds its key.
    let peer_key = SecretKey::from_bytes(&[8; 32]);
    let mut peer = Offer::new(&me, &peer_key, 0, NOW_MS);
    peer.hello = Hello {
        node_key: peer_key.public_key(),
        ..theirs
    };
    let proof = peer.prove(&peer_key, &mine.hello);
    match mine.accept(&me, &peer.hello, &proof) {
        Ok(keys) => assert_ne!(keys.send, keys.recv, "both directions share a key"),
        Err(crate::network::handshake::HandshakeError::SelfConnection) => {
            assert_eq!(peer.hello.instance, me.nonce)
        }
        Err(crate::network::handshake::HandshakeError::WeakEphemeral) => {}
        Err(e) => panic!("a correct proof was refused: {e}"),
    }
}
