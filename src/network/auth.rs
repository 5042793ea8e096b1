//! Authenticated frames: after the handshake, every frame carries a MAC under a per-direction
//! session key and an implicit sequence number, so nothing can be injected, reordered or
//! replayed into a session.
//!
//! ```text
//! | length | type | flags | body ... | tag: 16 bytes = BLAKE3-keyed(key, seq ‖ type ‖ flags ‖ body) |
//! ```
//!
//! The keys come from the handshake's ephemeral X25519 secret and its transcript, one per
//! direction (a frame cannot be reflected back to its sender). The sequence number is not
//! sent: each side counts the frames it sent and received, so a replayed or dropped frame
//! shifts the count and fails its tag. The tag is checked here; the body is left as it
//! travelled ([`RawFrame`]), decompressed by the peer's reader only after its rate limit.
//! Frames are authenticated, not encrypted: the protocol carries public data.

use super::frame::{put_frame, split_frame, wire_body, Frame, FrameError, RawFrame};
use bytes::BytesMut;
use subtle::ConstantTimeEq;
use tokio_util::codec::{Decoder, Encoder};

/// Bytes of MAC appended to each authenticated frame.
pub const TAG_BYTES: usize = 16;
const SEND_CONTEXT: &str = "timecoin 2026 p2p session key v2";

/// The two keys of one session, as seen from one side.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub send: [u8; 32],
    pub recv: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

impl SessionKeys {
    /// Derives both directions' keys: each is bound to the shared secret, the transcript and
    /// the ephemeral key of the side that sends under it.
    pub fn derive(
        shared: &[u8; 32],
        transcript: &crate::types::Hash32,
        mine: &[u8; 32],
        theirs: &[u8; 32],
    ) -> SessionKeys {
        let key = |sender: &[u8; 32]| {
            let mut h = blake3::Hasher::new_derive_key(SEND_CONTEXT);
            h.update(shared);
            h.update(&transcript.0);
            h.update(sender);
            *h.finalize().as_bytes()
        };
        SessionKeys {
            send: key(mine),
            recv: key(theirs),
        }
    }
}

/// One direction's key and frame count.
struct Direction {
    key: [u8; 32],
    seq: u64,
}

impl Direction {
    fn tag(&self, kind: u8, flags: u8, body: &[u8]) -> [u8; TAG_BYTES] {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&self.seq.to_le_bytes());
        h.update(&[kind, flags]);
        h.update(body);
        let mut out = [0; TAG_BYTES];
        out.copy_from_slice(&h.finalize().as_bytes()[..TAG_BYTES]);
        out
    }
}

/// The codec of a P2P connection: plain frames during the handshake, authenticated frames
/// once [`SessionCodec::install`] has been called.
#[derive(Default)]
pub struct SessionCodec {
    keys: Option<(Direction, Direction)>,
}

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCodec")
            .field("authenticated", &self.is_authenticated())
            .finish()
    }
}

impl SessionCodec {
    /// Authenticates every frame from now on, both ways.
    pub fn install(&mut self, keys: &SessionKeys) {
        self.keys = Some((
            Direction {
                key: keys.send,
                seq: 0,
            },
            Direction {
                key: keys.recv,
                seq: 0,
            },
        ));
    }

    pub fn is_authenticated(&self) -> bool {
        self.keys.is_some()
    }
}

impl Encoder<Frame> for SessionCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let kind = frame.kind;
        let (flags, body) = wire_body(frame.kind, frame.body);
        match &mut self.keys {
            None => put_frame(kind, flags, &body, &[], dst),
            Some((send, _)) => {
                let tag = send.tag(kind, flags, &body);
                put_frame(kind, flags, &body, &tag, dst)?;
                send.seq = send.seq.wrapping_add(1);
                Ok(())
            }
        }
    }
}

impl Decoder for SessionCodec {
    type Item = RawFrame;
    type Error = FrameError;

    /// Cuts and authenticates the next frame; it is not decompressed ([`RawFrame::finish`]).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
        let Some(mut raw) = split_frame(src)? else {
            return Ok(None);
        };
        if let Some((_, recv)) = &mut self.keys {
            if raw.body.len() < TAG_BYTES {
                return Err(FrameError::BadMac);
            }
            let tag = raw.body.split_off(raw.body.len() - TAG_BYTES);
            let expected = recv.tag(raw.kind, raw.flags, &raw.body);
            if !bool::from(expected.ct_eq(&tag[..])) {
                return Err(FrameError::BadMac);
            }
            recv.seq = recv.seq.wrapping_add(1);
        }
        Ok(Some(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Hash32;

    fn pair() -> (SessionCodec, SessionCodec) {
        let keys = SessionKeys::derive(&[3; 32], &Hash32([4; 32]), &[1; 32], &[2; 32]);
        let other = SessionKeys {
            send: keys.recv,
            recv: keys.send,
        };
        let (mut a, mut b) = (SessionCodec::default(), SessionCodec::default());
        a.install(&keys);
        b.install(&other);
        (a, b)
    }

    fn frame(kind: u8, len: usize) -> Frame {
        Frame {
            kind,
            body: vec![kind; len],
        }
    }

    #[test]
    fn frames_round_trip_in_order_large_and_small() {
        let (mut a, mut b) = pair();
        let mut wire = BytesMut::new();
        for (k, len) in [(1, 10), (2, 100_000), (3, 0)] {
            a.encode(frame(k, len), &mut wire).unwrap();
        }
        for (k, len) in [(1, 10), (2, 100_000), (3, 0)] {
            let raw = b.decode(&mut wire).unwrap().unwrap();
            let large = len > 1024 && crate::network::message::may_be_large(k);
            assert_eq!(raw.is_compressed(), large);
            assert_eq!(raw.finish().unwrap(), frame(k, len));
        }
    }

    #[test]
    fn replayed_reordered_reflected_and_forged_frames_fail() {
        let (mut a, mut b) = pair();
        let mut one = BytesMut::new();
        a.encode(frame(1, 10), &mut one).unwrap();
        let mut two = BytesMut::new();
        a.encode(frame(2, 10), &mut two).unwrap();
        // Reordered: the second frame first.
        assert!(matches!(
            b.decode(&mut two.clone()),
            Err(FrameError::BadMac)
        ));
        let (_, mut b) = pair();
        assert!(b.decode(&mut one.clone()).unwrap().is_some());
        // Replayed: the first frame again.
        assert!(matches!(
            b.decode(&mut one.clone()),
            Err(FrameError::BadMac)
        ));
        // Reflected: a's own frame back to a.
        let (mut a2, _) = pair();
        let (mut a3, _) = pair();
        let mut mine = BytesMut::new();
        a3.encode(frame(1, 10), &mut mine).unwrap();
        assert!(matches!(a2.decode(&mut mine), Err(FrameError::BadMac)));
        // Forged: a plain frame (what an injector without the key can write).
        let (_, mut b) = pair();
        let mut plain = BytesMut::new();
        SessionCodec::default()
            .encode(frame(1, 40), &mut plain)
            .unwrap();
        let err = b.decode(&mut plain).unwrap_err();
        assert!(matches!(err, FrameError::BadMac));
        assert!(!err.is_peer_fault());
    }
}
