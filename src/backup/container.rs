//! The file container shared by backups and UTXO snapshots: a magic, a format version, a
//! header, LZ4-compressed chunks, and a BLAKE3 checksum over every byte before it.
//!
//! ```text
//! magic (8) ‖ version u32 ‖ header_len u32 ‖ header
//! ‖ { raw_len u32 (≠ 0) ‖ packed_len u32 ‖ LZ4 block } *
//! ‖ 0u32 (end) ‖ BLAKE3(everything before) (32) ‖ EOF
//! ```
//!
//! The reader hashes as it goes and checks the checksum when it reaches the end marker, so a
//! caller acts on the content as final only after [`ContainerReader::next_chunk`] returned
//! `None`. Every length is bounded before anything is allocated: a damaged length field is
//! reported, never trusted.

use std::io::{Read, Write};

/// Largest header.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest chunk before compression: two of the largest database records fit.
pub const MAX_CHUNK_BYTES: usize = 2 * crate::types::codec::MAX_RECORD_BYTES;
/// Chunks are cut once they reach this size.
pub const CHUNK_TARGET: usize = 1 << 20;
/// Version of the container and of the content formats inside it.
pub const FORMAT_VERSION: u32 = 1;

/// Which kind of file: each has its own magic, so one is never taken for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Snapshot,
}

impl Kind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Kind::Backup => b"TIMEDBAK",
            Kind::Snapshot => b"TIMEDSNP",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Backup => "timed backup",
            Kind::Snapshot => "timed UTXO snapshot",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a {expected} file (its first bytes are not the right magic)")]
    WrongMagic { expected: &'static str },
    #[error("file format version {found} is not supported (this timed reads version {supported})")]
    Version { found: u32, supported: u32 },
    #[error("the file is truncated: it ends within the part that starts at byte {at}, before its checksum")]
    Truncated { at: u64 },
    #[error("the file is corrupt at byte {at}: {reason}")]
    Corrupt { at: u64, reason: String },
    #[error("the file is corrupt: its BLAKE3 checksum does not match its content")]
    Checksum,
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a container; every byte also goes into the checksum.
pub struct ContainerWriter<W: Write> {
    out: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> ContainerWriter<W> {
    pub fn new(out: W, kind: Kind, header: &[u8]) -> std::io::Result<Self> {
        if header.len() > MAX_HEADER_BYTES {
            return Err(std::io::Error::other(format!(
                "header of {} bytes exceeds {MAX_HEADER_BYTES}",
                header.len()
            )));
        }
        let mut w = ContainerWriter {
            out,
            hasher: blake3::Hasher::new(),
            written: 0,
        };
        w.put(kind.magic())?;
        w.put(&FORMAT_VERSION.to_le_bytes())?;
        w.put(&(header.len() as u32).to_le_bytes())?;
        w.put(header)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends one chunk (empty chunks are skipped: a zero length ends the stream).
    pub fn chunk(&mut self, raw: &[u8]) -> std::io::Result<()> {
        if raw.is_empty() {
            return Ok(());
        }
        if raw.len() > MAX_CHUNK_BYTES {
            return Err(std::io::Error::other(format!(
                "chunk of {} bytes exceeds {MAX_CHUNK_BYTES}",
                raw.len()
            )));
        }
        let packed = lz4_flex::block::compress(raw);
        self.put(&(raw.len() as u32).to_le_bytes())?;
        self.put(&(packed.len() as u32).to_le_bytes())?;
        self.put(&packed)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the end marker and the checksum; returns the output and the total size.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        self.put(&0u32.to_le_bytes())?;
        let sum = *self.hasher.finalize().as_bytes();
        self.out.write_all(&sum)?;
        self.out.flush()?;
        Ok((self.out, self.written + 32))
    }
}

/// Reads a container, checking every length and, at the end, the checksum.
pub struct ContainerReader<R: Read> {
    inp: R,
    hasher: blake3::Hasher,
    pos: u64,
    done: bool,
}

impl<R: Read> ContainerReader<R> {
    /// Reads the magic, the version and the header (not yet covered by a verified checksum:
    /// the caller must not act on it as final before the end).
    pub fn open(inp: R, kind: Kind) -> Result<(Self, Vec<u8>), FormatError> {
        let mut r = ContainerReader {
            inp,
            hasher: blake3::Hasher::new(),
            pos: 0,
            done: false,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic).map_err(|e| match e {
            FormatError::Truncated { .. } => FormatError::WrongMagic {
                expected: kind.name(),
            },
            other => other,
        })?;
        if &magic != kind.magic() {
            return Err(FormatError::WrongMagic {
                expected: kind.name(),
            });
        }
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::Version {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let len = r.u32()? as usize;
        if len > MAX_HEADER_BYTES {
            return Err(r.corrupt(format!(
                "a header of {len} bytes (at most {MAX_HEADER_BYTES})"
            )));
        }
        let mut header = vec![0u8; len];
        r.take(&mut header)?;
        Ok((r, header))
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The underlying reader (to finish its progress report).
    pub fn into_inner(self) -> R {
        self.inp
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> FormatError {
        FormatError::Corrupt {
            at: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), FormatError> {
        self.inp.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => FormatError::Truncated { at: self.pos },
            _ => FormatError::Io(e),
        })?;
        self.hasher.update(buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// The next chunk, decompressed; `None` once the end marker and a matching checksum
    /// (followed by nothing) were read.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, FormatError> {
        if self.done {
            return Ok(None);
        }
        let raw_len = self.u32()? as usize;
        if raw_len == 0 {
            let expected = *self.hasher.finalize().as_bytes();
            let mut sum = [0u8; 32];
            self.inp.read_exact(&mut sum).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => FormatError::Truncated { at: self.pos },
                _ => FormatError::Io(e),
            })?;
            if sum != expected {
                return Err(FormatError::Checksum);
            }
            self.pos += 32;
            let mut extra = [0u8; 1];
            if self.inp.read(&mut extra)? != 0 {
                return Err(self.corrupt("bytes follow the checksum"));
            }
            self.done = true;
            return Ok(None);
        }
        if raw_len > MAX_CHUNK_BYTES {
            return Err(self.corrupt(format!(
                "a chunk of {raw_len} bytes (at most {MAX_CHUNK_BYTES})"
            )));
        }
        let packed_len = self.u32()? as usize;
        // LZ4's worst case for incompressible input is slightly larger than the input.
        if packed_len > raw_len + raw_len / 255 + 16 {
            return Err(self.corrupt(format!(
                "a compressed chunk of {packed_len} bytes for {raw_len} bytes of content"
            )));
        }
        let mut packed = vec![0u8; packed_len];
        self.take(&mut packed)?;
        let raw = lz4_flex::block::decompress(&packed, raw_len)
            .map_err(|e| self.corrupt(format!("a chunk does not decompress: {e}")))?;
        if raw.len() != raw_len {
            return Err(self.corrupt(format!(
                "a chunk decompresses to {} bytes, its length field says {raw_len}",
                raw.len()
            )));
        }
        Ok(Some(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ContainerWriter::new(Vec::new(), Kind::Backup, b"hdr").unwrap();
        w.chunk(&[7u8; 5000]).unwrap();
        w.chunk(b"second").unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), FormatError> {
        let (mut r, header) = ContainerReader::open(bytes, Kind::Backup)?;
        let mut chunks = Vec::new();
        while let Some(c) = r.next_chunk()? {
            chunks.push(c);
        }
        Ok((header, chunks))
    }

    #[test]
    fn round_trip() {
        let (header, chunks) = read_all(&sample()).unwrap();
        assert_eq!(header, b"hdr");
        assert_eq!(chunks, vec![vec![7u8; 5000], b"second".to_vec()]);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(read_all(&bad).is_err(), "flip at {i} accepted");
            assert!(read_all(&good[..i]).is_err(), "truncation at {i} accepted");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            read_all(&longer),
            Err(FormatError::Corrupt { .. })
        ));
        assert!(matches!(
            read_all(&good[..good.len() - 1]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn a_snapshot_is_not_a_backup() {
        let w = ContainerWriter::new(Vec::new(), Kind::Snapshot, b"").unwrap();
        let bytes = w.finish().unwrap().0;
        assert!(matches!(
            ContainerReader::open(&bytes[..], Kind::Backup),
            Err(FormatError::WrongMagic { .. })
        ));
    }
}
