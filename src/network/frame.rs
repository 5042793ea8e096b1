//! Framing of the P2P stream: a length prefix, a message type and a flags byte, then the body.
//!
//! ```text
//! | length: u32 BE (type + flags + body) | type: u8 | flags: u8 | body ... |
//! ```
//!
//! Frames above `MAX_FRAME_BYTES` end the connection before any of their body is read. Bodies
//! over `COMPRESS_ABOVE` bytes are LZ4-compressed with their decompressed size in front; the
//! receiver checks that size against `MAX_FRAME_BYTES` before allocating, and decompression
//! must produce exactly that many bytes, so a small frame can never expand into a huge one.
//!
//! A session ([`super::auth::SessionCodec`]) yields [`RawFrame`]s, bodies still as they
//! travelled: the peer's reader charges a frame's [`RawFrame::cost`] (its wire bytes, or its
//! claimed decompressed size if larger, read from four bytes) to the peer's rate limit first,
//! and only a frame within the limit is [`RawFrame::finish`]ed (decompressed). A peer flooding
//! compressed frames past its rate costs this node a length check per frame, never the
//! decompression.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Largest frame, header included: a full block plus room.
pub const MAX_FRAME_BYTES: usize = crate::types::codec::MAX_BLOCK_BYTES + 64 * 1024;
/// Bodies larger than this are compressed.
pub const COMPRESS_ABOVE: usize = 1024;
const FLAG_COMPRESSED: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED;

/// One decoded frame: its message type and its plain (decompressed) body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("frame is shorter than its header")]
    Truncated,
    #[error("frame has unknown flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("compressed body is malformed: {0}")]
    BadCompression(String),
    #[error("a frame of type {0} is never large, yet came compressed")]
    CompressedSmallKind(u8),
    #[error("compressed body claims {claimed} bytes, limit {max}")]
    DecompressedTooLarge { claimed: usize, max: usize },
    #[error("frame fails its session authentication (injected, reordered or replayed)")]
    BadMac,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Every framing error is the peer's doing except a failing socket and a frame that
    /// fails authentication: that one may have been injected by someone on the path, so it
    /// ends the session without counting against the peer.
    pub fn is_peer_fault(&self) -> bool {
        !matches!(self, FrameError::Io(_) | FrameError::BadMac)
    }
}

/// The tokio-util codec for [`Frame`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameCodec;

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (flags, body) = wire_body(frame.kind, frame.body);
        put_frame(frame.kind, flags, &body, &[], dst)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match split_frame(src)? {
            Some(raw) => Ok(Some(raw.finish()?)),
            None => Ok(None),
        }
    }
}

/// The body as it travels, and its flags: compressed if large and of a kind that may be.
pub(super) fn wire_body(kind: u8, body: Vec<u8>) -> (u8, Vec<u8>) {
    if body.len() > COMPRESS_ABOVE && super::message::may_be_large(kind) {
        let mut out = Vec::with_capacity(body.len() / 2 + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&lz4_flex::block::compress(&body));
        (FLAG_COMPRESSED, out)
    } else {
        (0, body)
    }
}

/// Writes one frame: header, wire body, then `trailer` (a session's MAC, or nothing).
pub(super) fn put_frame(
    kind: u8,
    flags: u8,
    body: &[u8],
    trailer: &[u8],
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    let len = body.len() + trailer.len() + 2;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    dst.put_u8(kind);
    dst.put_u8(flags);
    dst.extend_from_slice(body);
    dst.extend_from_slice(trailer);
    Ok(())
}

/// One frame cut from the stream, its body still as it travelled (compressed or not; a
/// session's MAC already checked and removed).
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub body: BytesMut,
    /// Bytes the frame took on the wire: length prefix, header, body and MAC.
    pub wire_len: usize,
}

impl RawFrame {
    /// Whether the body is compressed (finishing it costs a decompression).
    pub fn is_compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// What the frame costs the receiver's byte budget: its wire bytes, or the decompressed
    /// size its body claims if that is larger (decompression must produce exactly that many
    /// bytes, [`RawFrame::finish`]), so a well-compressed frame pays for what it expands to.
    /// The cheap checks of `finish` come first (flags, a compressed small kind, a claim over
    /// the limit), so a frame that breaks them is refused here; nothing is decompressed.
    pub fn checked_cost(&self) -> Result<usize, FrameError> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(self.flags));
        }
        if !self.is_compressed() {
            return Ok(self.wire_len);
        }
        if !super::message::may_be_large(self.kind) {
            return Err(FrameError::CompressedSmallKind(self.kind));
        }
        let claimed = claimed_len(&self.body)?;
        Ok(self.wire_len.max(claimed + 6))
    }

    /// Checks the flags and decompresses the body: call it only once the frame has passed
    /// the sender's rate limit.
    pub fn finish(self) -> Result<Frame, FrameError> {
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(self.flags));
        }
        let body = if self.is_compressed() {
            if !super::message::may_be_large(self.kind) {
                return Err(FrameError::CompressedSmallKind(self.kind));
            }
            let body = decompress(&self.body)?;
            crate::metrics::frame_decompressed();
            body
        } else {
            self.body.to_vec()
        };
        Ok(Frame {
            kind: self.kind,
            body,
        })
    }
}

/// Cuts the next whole frame from `src`, refusing an oversized length before reading on.
pub(super) fn split_frame(src: &mut BytesMut) -> Result<Option<RawFrame>, FrameError> {
    if src.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    if len < 2 {
        return Err(FrameError::Truncated);
    }
    if src.len() < 4 + len {
        src.reserve(4 + len - src.len());
        return Ok(None);
    }
    src.advance(4);
    let kind = src.get_u8();
    let flags = src.get_u8();
    let body = src.split_to(len - 2);
    Ok(Some(RawFrame {
        kind,
        flags,
        body,
        wire_len: 4 + len,
    }))
}

/// The decompressed size a compressed body claims (its first four bytes), within the limit.
fn claimed_len(body: &[u8]) -> Result<usize, FrameError> {
    let Some(&[a, b, c, d]) = body.get(..4) else {
        return Err(FrameError::Truncated);
    };
    let claimed = u32::from_le_bytes([a, b, c, d]) as usize;
    if claimed > MAX_FRAME_BYTES {
        return Err(FrameError::DecompressedTooLarge {
            claimed,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(claimed)
}

fn decompress(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let claimed = claimed_len(body)?;
    let mut out = vec![0u8; claimed];
    let n = lz4_flex::block::decompress_into(&body[4..], &mut out)
        .map_err(|e| FrameError::BadCompression(e.to_string()))?;
    if n != claimed {
        return Err(FrameError::BadCompression(format!(
            "decompressed {n} bytes, header said {claimed}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: Frame) -> Frame {
        let mut buf = BytesMut::new();
        FrameCodec.encode(frame, &mut buf).unwrap();
        FrameCodec.decode(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn small_and_large_bodies_round_trip_and_large_ones_shrink() {
        let small = Frame {
            kind: 3,
            body: vec![7; 100],
        };
        assert_eq!(round_trip(small.clone()), small);
        let large = Frame {
            kind: 4,
            body: vec![7; 100_000],
        };
        let mut buf = BytesMut::new();
        FrameCodec.encode(large.clone(), &mut buf).unwrap();
        assert!(buf.len() < 10_000, "compressed to {} bytes", buf.len());
        assert_eq!(FrameCodec.decode(&mut buf).unwrap(), Some(large));
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let mut buf = BytesMut::new();
        buf.put_u32((MAX_FRAME_BYTES + 1) as u32);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        // 20 bytes on the wire claiming a gigabyte once decompressed.
        let mut buf = BytesMut::new();
        buf.put_u32(2 + 8);
        buf.put_u8(1);
        buf.put_u8(FLAG_COMPRESSED);
        buf.extend_from_slice(&(1u32 << 30).to_le_bytes());
        buf.extend_from_slice(&[0xff, 0, 0, 0]);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(FrameError::DecompressedTooLarge { .. })
        ));
        // A size that fits but lies about the content.
        let mut buf = BytesMut::new();
        buf.put_u32(2 + 8);
        buf.put_u8(1);
        buf.put_u8(FLAG_COMPRESSED);
        buf.extend_from_slice(&1000u32.to_le_bytes());
        buf.extend_from_slice(&[0x10, 0x41, 0, 0]);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(FrameError::BadCompression(_))
        ));
    }

    #[test]
    fn a_compressed_frame_of_a_small_kind_is_refused_undecompressed() {
        // GetBlocks (16) is a few bytes; a compressed one claiming 8 MiB is never expanded.
        let mut buf = BytesMut::new();
        buf.put_u32(2 + 8);
        buf.put_u8(16);
        buf.put_u8(FLAG_COMPRESSED);
        buf.extend_from_slice(&((MAX_FRAME_BYTES - 1) as u32).to_le_bytes());
        buf.extend_from_slice(&[0xff, 0, 0, 0]);
        assert!(matches!(
            FrameCodec.decode(&mut buf),
            Err(FrameError::CompressedSmallKind(16))
        ));
    }

    #[test]
    fn a_compressed_frame_costs_what_it_claims_to_expand_to_before_any_decompression() {
        let mut buf = BytesMut::new();
        FrameCodec
            .encode(
                Frame {
                    kind: 17,
                    body: vec![0; 1 << 20],
                },
                &mut buf,
            )
            .unwrap();
        let wire = buf.len();
        let raw = split_frame(&mut buf).unwrap().unwrap();
        assert!(raw.is_compressed());
        assert_eq!(raw.wire_len, wire);
        assert!(wire < 10_000, "{wire} bytes on the wire");
        assert_eq!(raw.checked_cost().unwrap(), (1 << 20) + 6);
        // A plain frame costs its wire bytes; a claim over the limit is refused undecompressed.
        let mut buf = BytesMut::new();
        FrameCodec
            .encode(
                Frame {
                    kind: 2,
                    body: vec![1; 8],
                },
                &mut buf,
            )
            .unwrap();
        assert_eq!(
            split_frame(&mut buf)
                .unwrap()
                .unwrap()
                .checked_cost()
                .unwrap(),
            4 + 2 + 8
        );
        let mut buf = BytesMut::new();
        buf.put_u32(2 + 8);
        buf.put_u8(17);
        buf.put_u8(FLAG_COMPRESSED);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&[0xff, 0, 0, 0]);
        let raw = split_frame(&mut buf).unwrap().unwrap();
        assert!(matches!(
            raw.checked_cost(),
            Err(FrameError::DecompressedTooLarge { .. })
        ));
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut full = BytesMut::new();
        FrameCodec
            .encode(
                Frame {
                    kind: 9,
                    body: vec![1, 2, 3],
                },
                &mut full,
            )
            .unwrap();
        let mut part = BytesMut::from(&full[..5]);
        assert_eq!(FrameCodec.decode(&mut part).unwrap(), None);
        part.extend_from_slice(&full[5..]);
        assert_eq!(
            FrameCodec.decode(&mut part).unwrap(),
            Some(Frame {
                kind: 9,
                body: vec![1, 2, 3]
            })
        );
    }

    proptest! {
        #[test]
        fn any_frame_round_trips(kind in any::<u8>(), body in prop::collection::vec(any::<u8>(), 0..5000)) {
            let f = Frame { kind, body };
            prop_assert_eq!(round_trip(f.clone()), f);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut codec = FrameCodec;
            for _ in 0..8 {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
