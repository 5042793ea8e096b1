//! Fuzz target bodies: each takes the bytes a peer, an RPC client or a file could hand the
//! node and runs them through the same decoder the daemon uses, then checks a property of
//! what came out (a canonical value re-encodes to the same bytes, a decoded message survives
//! a round trip, a parsed file parses again to the same thing).
//!
//! ```text
//! fuzz/fuzz_targets/<name>.rs ─┐  (cargo fuzz, nightly, coverage-guided)
//!                              ├─► fuzzing::TARGETS[name](bytes) ─► the daemon's decoder
//! tests/fuzz_corpus.rs ────────┘  (stable, every file of fuzz/corpus/<name>/)
//! ```
//!
//! A target panics only when a property fails or the decoder itself panics: either is a bug.
//! Nothing here is used by the running node; it sits on top of the module graph and nothing
//! imports it.

mod codec;
pub mod files;
mod network;
mod rpc;

pub use codec::{block, transaction, wire_message};
pub use files::{backup_file, config_file, genesis_file, snapshot_file};
pub use network::{frame, handshake};
pub use rpc::{body as rpc_body, params as rpc_params};

/// One fuzz target: its name (the directory of its corpus, the name of its cargo-fuzz
/// binary) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("transaction", transaction),
    ("block", block),
    ("wire_message", wire_message),
    ("frame", frame),
    ("handshake", handshake),
    ("rpc_body", rpc_body),
    ("rpc_params", rpc_params),
    ("config_file", config_file),
    ("genesis_file", genesis_file),
    ("backup_file", backup_file),
    ("snapshot_file", snapshot_file),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Most pieces taken from one input.
const MAX_PIECES: usize = 64;

/// Splits `data` into length-prefixed pieces (a truncated last piece is dropped).
pub fn split_pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [a, b, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*a, *b]));
        if rest.len() < len || out.len() == MAX_PIECES {
            break;
        }
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    out
}

/// The inverse of [`split_pieces`], for building seeds; `None` if a piece is longer than a
/// `u16` can say.
pub fn join_pieces(pieces: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for p in pieces {
        let len = u16::try_from(p.len()).ok()?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    Some(out)
}
