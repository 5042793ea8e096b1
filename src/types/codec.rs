//! The canonical encoding: every byte that timed hashes, signs, stores or sends comes from here.
//!
//! bincode 2 with one fixed configuration (little endian, variable-length integers) and a hard
//! size limit per kind of object. Decoding is strict: the input must be no longer than the
//! object's limit, must be consumed entirely, and must be the exact bytes that re-encoding the
//! decoded value gives. So every value has exactly one encoding, and a peer cannot make two byte
//! strings that mean the same thing.

use bincode::config::{self, Configuration, LittleEndian, Varint};
use bincode::{Decode, Encode};

/// Largest encoded transaction (consensus rule).
pub const MAX_TX_BYTES: usize = 100_000;
/// Largest encoded block, header and transactions together (consensus rule).
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;
/// Largest vote batch or consensus message.
pub const MAX_VOTE_BYTES: usize = 1024 * 1024;
/// Largest record read back from the database.
pub const MAX_RECORD_BYTES: usize = MAX_BLOCK_BYTES + 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("{what} is not in canonical encoding")]
    NonCanonical { what: &'static str },
}

fn config() -> Configuration<LittleEndian, Varint> {
    config::standard()
}

/// Encodes a value. Infallible for timed's types: they hold only integers, byte arrays,
/// vectors and strings, which bincode writes to a `Vec` without any failure path.
pub fn encode<T: Encode>(value: &T) -> Vec<u8> {
    match bincode::encode_to_vec(value, config()) {
        Ok(bytes) => bytes,
        Err(e) => unreachable!("encoding plain data into a Vec cannot fail: {e}"),
    }
}

/// The length of `value`'s encoding, counted without writing it anywhere (a block's is
/// megabytes, and its size is checked on every path a block takes).
pub fn encoded_len<T: Encode>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::encode_into_writer(value, &mut size, config()) {
        Ok(()) => size.bytes_written,
        Err(e) => unreachable!("counting the bytes of plain data cannot fail: {e}"),
    }
}

/// Feeds the encoding of `value` into `writer` (typically a hasher) without an allocation.
pub fn encode_into<T: Encode, W: std::io::Write>(value: &T, writer: &mut W) {
    if let Err(e) = bincode::encode_into_std_write(value, writer, config()) {
        unreachable!("encoding into an in-memory writer cannot fail: {e}");
    }
}

/// Decodes bytes into `T`, strictly (see the module doc). `MAX` bounds both the input and
/// every allocation the decoder makes while reading it.
pub fn decode<T, const MAX: usize>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError>
where
    T: Decode<()> + Encode,
{
    if bytes.len() > MAX {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max: MAX,
        });
    }
    let (value, used): (T, usize) = bincode::decode_from_slice(bytes, config().with_limit::<MAX>())
        .map_err(|e| CodecError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes {
            what,
            extra: bytes.len() - used,
        });
    }
    if encode(&value) != bytes {
        return Err(CodecError::NonCanonical { what });
    }
    Ok(value)
}

/// Implemented by every top-level object that travels or is stored on its own.
pub trait Canonical: Sized {
    /// The object's canonical bytes.
    fn to_bytes(&self) -> Vec<u8>;
    /// Strict decoding with the object's own size limit.
    fn from_bytes(bytes: &[u8]) -> Result<Self, CodecError>;
}

/// Gives a type its [`Canonical`] implementation with a size limit.
#[macro_export]
macro_rules! canonical {
    ($ty:ty, $what:literal, $max:expr) => {
        impl $crate::types::codec::Canonical for $ty {
            fn to_bytes(&self) -> Vec<u8> {
                $crate::types::codec::encode(self)
            }
            fn from_bytes(
                bytes: &[u8],
            ) -> ::std::result::Result<Self, $crate::types::codec::CodecError> {
                $crate::types::codec::decode::<$ty, { $max }>($what, bytes)
            }
        }
    };
}
