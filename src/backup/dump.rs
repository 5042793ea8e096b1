//! Writing a backup: every record of the database as it was at one committed height.
//!
//! ```text
//! on the consensus task (no write can happen):  tip H, and a copy of the state trees
//!     (meta, UTXOs and their states, masternode sets, safety state, pools)
//! afterwards, while consensus runs on:          the peer table; history trees up to H
//!     (block hashes, blocks, certificates, transaction index, address history)
//! ```
//!
//! Every write to the database comes from the consensus task, so the state trees copied
//! between two of its inputs agree with each other. The history trees only ever gain records
//! above the tip (a committed height never changes), so filtering them to heights ≤ H after
//! the fact gives exactly what they held at H. Consensus therefore pauses only for the copy
//! of the state trees, in memory and about the size of the UTXO set (the same pass fast
//! sync's snapshot server makes), not for the whole chain's history.
//!
//! The peer table stays off the consensus task too: it is the network's, never written by
//! consensus, so any moment's copy is as good as another. (The UTXO address index is not in
//! a backup since schema 5: a node builds it in memory from the UTXOs.)
//!
//! The address history (`ledger/history.rs`) is one of those growing trees, with one twist:
//! a transaction final at layer 1 is recorded at once at height H + 1, before its block. At
//! H, the records at H + 1 are exactly those of the transactions then in `final_txs` (a state
//! tree, copied on the consensus task); later records at H + 1 belong to transactions that
//! became final, or were met in block H + 1, afterwards. So the history is read after the
//! fact too: heights ≤ H, and at H + 1 the transactions final at capture.

use super::container::{ContainerWriter, Kind, CHUNK_TARGET, MAX_CHUNK_BYTES};
use super::files::write_new_file;
use super::progress::Progress;
use super::{io_at, BackupError, Result};
use crate::ledger::UtxoCommitment;
use crate::storage::schema::height_key;
use crate::storage::{Storage, TreeId, SCHEMA_VERSION};
use crate::types::{codec, Canonical, Hash32, Network, TxLocation};
use bincode::{Decode, Encode};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Trees whose records consensus may change or remove: copied on the consensus task.
pub const STATE_TREES: [TreeId; 7] = [
    TreeId::Meta,
    TreeId::Utxos,
    TreeId::UtxoStates,
    TreeId::Masternodes,
    TreeId::Consensus,
    TreeId::FinalTxs,
    TreeId::PendingTxs,
];

/// What a backup is: known before its records are written, checked again after a restore.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BackupHeader {
    pub network: Network,
    pub schema_version: u32,
    pub genesis: Hash32,
    pub height: u64,
    pub best_hash: Hash32,
    pub utxo_commitment: Hash32,
    pub created_ms: u64,
}

impl BackupHeader {
    /// Strict decoding of a backup file's header, bounded by the container's header limit.
    pub fn decode(raw: &[u8]) -> std::result::Result<Self, codec::CodecError> {
        codec::decode::<BackupHeader, { super::container::MAX_HEADER_BYTES }>("backup header", raw)
    }
}

/// One database record; `tree` indexes `TreeId::ALL`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Record {
    pub tree: u8,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// The content of one chunk. `Counts` comes last, once: records per tree, by name.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum BackupChunk {
    Records(Vec<Record>),
    Counts(Vec<(String, u64)>),
}

impl BackupChunk {
    pub fn decode(raw: &[u8]) -> std::result::Result<Self, codec::CodecError> {
        codec::decode::<BackupChunk, MAX_CHUNK_BYTES>("backup chunk", raw)
    }
}

/// The state trees at one tip, taken where nothing writes.
pub struct StateCapture {
    pub header: BackupHeader,
    records: Vec<(TreeId, sled::IVec, sled::IVec)>,
}

/// What a finished backup holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackupSummary {
    pub path: String,
    pub height: u64,
    pub bestblockhash: String,
    pub utxocommitment: String,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Copies the state trees and reads the tip. Must run where no write can happen between its
/// first and last read: on the consensus task, or on a database no process has open.
pub fn capture_state(storage: &Storage, network: Network) -> Result<StateCapture> {
    let tip = storage.tip()?.ok_or(BackupError::NoTip)?;
    let genesis = storage.block_hash_at(0)?.ok_or(BackupError::NoTip)?;
    let commitment = UtxoCommitment::from_bytes(&tip.utxo_state);
    let mut records = Vec::new();
    for tree in STATE_TREES {
        for (k, v) in storage.records(tree)? {
            records.push((tree, k, v));
        }
    }
    Ok(StateCapture {
        header: BackupHeader {
            network,
            schema_version: SCHEMA_VERSION,
            genesis,
            height: tip.height,
            best_hash: tip.hash,
            utxo_commitment: commitment.digest(),
            created_ms: crate::clock::wall_clock_ms(),
        },
        records,
    })
}

/// Collects records into chunks of about `CHUNK_TARGET` bytes and counts them per tree.
struct RecordSink<W: Write> {
    out: ContainerWriter<W>,
    pending: Vec<Record>,
    pending_bytes: usize,
    counts: [u64; TreeId::ALL.len()],
    progress: Progress,
}

impl<W: Write> RecordSink<W> {
    fn push(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.pending_bytes += key.len() + value.len() + 8;
        self.pending.push(Record {
            tree: tree.index() as u8,
            key: key.to_vec(),
            value: value.to_vec(),
        });
        self.counts[tree.index()] += 1;
        if self.pending_bytes >= CHUNK_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = BackupChunk::Records(std::mem::take(&mut self.pending));
        self.out.chunk(&codec::encode(&chunk))?;
        self.pending_bytes = 0;
        self.progress.set(self.counts.iter().sum());
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<(W, u64, u64)> {
        self.flush()?;
        let counts: Vec<(String, u64)> = TreeId::ALL
            .iter()
            .map(|t| (t.name().to_string(), self.counts[t.index()]))
            .collect();
        self.out
            .chunk(&codec::encode(&BackupChunk::Counts(counts)))?;
        let total = self.counts.iter().sum();
        self.progress.finish();
        let (w, bytes) = self.out.finish()?;
        Ok((w, total, bytes))
    }
}

/// Writes the backup to `path` (a new file): the captured state, then the history trees up
/// to the captured height, read now. `interactive` allows a progress bar.
pub fn write_backup_file(
    storage: &Storage,
    capture: StateCapture,
    path: &Path,
    interactive: bool,
) -> Result<BackupSummary> {
    let started = Instant::now();
    let header = capture.header.clone();
    let (records, bytes) = write_new_file(path, |file| {
        let out = ContainerWriter::new(file, Kind::Backup, &codec::encode(&header))
            .map_err(io_at(path))?;
        let mut sink = RecordSink {
            out,
            pending: Vec::new(),
            pending_bytes: 0,
            counts: [0; TreeId::ALL.len()],
            progress: Progress::new("backing up", None, interactive),
        };
        for (tree, k, v) in &capture.records {
            sink.push(*tree, k, v).map_err(io_at(path))?;
        }
        for item in storage.tree(TreeId::Peers).iter() {
            let (k, v) = item.map_err(crate::storage::StorageError::from)?;
            sink.push(TreeId::Peers, &k, &v).map_err(io_at(path))?;
        }
        // Transactions final at layer 1 but in no block yet at H: their history is at H + 1.
        let final_at_capture: BTreeSet<Vec<u8>> = capture
            .records
            .iter()
            .filter(|(tree, _, _)| *tree == TreeId::FinalTxs)
            .map(|(_, k, _)| k.to_vec())
            .collect();
        drop(capture);
        write_history(storage, header.height, &mut sink, path)?;
        write_address_history(storage, header.height, &final_at_capture, &mut sink, path)?;
        let (_, records, bytes) = sink.finish().map_err(io_at(path))?;
        Ok((records, bytes))
    })?;
    let summary = BackupSummary {
        path: path.display().to_string(),
        height: header.height,
        bestblockhash: header.best_hash.to_hex(),
        utxocommitment: header.utxo_commitment.to_hex(),
        records,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        path = %path.display(),
        height = summary.height,
        records,
        bytes,
        "backup written"
    );
    Ok(summary)
}

/// Block hashes, blocks, certificates and the transaction index, up to `height` only.
fn write_history<W: Write>(
    storage: &Storage,
    height: u64,
    sink: &mut RecordSink<W>,
    path: &Path,
) -> Result<()> {
    let io = |e| BackupError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let upto = height_key(height);
    for item in storage.tree(TreeId::BlockHashes).range(..=upto) {
        let (k, hash) = item.map_err(crate::storage::StorageError::from)?;
        sink.push(TreeId::BlockHashes, &k, &hash).map_err(io)?;
        let hash = crate::types::Hash32(hash.as_ref().try_into().map_err(|_| {
            crate::storage::StorageError::Corrupt {
                tree: TreeId::BlockHashes.name(),
                key: u64::from_be_bytes(k.as_ref().try_into().unwrap_or_default()).to_string(),
                reason: format!("expected a 32-byte hash, found {} bytes", hash.len()),
            }
        })?);
        // A fast-synced node has no bodies below its snapshot height.
        if let Some(block) = storage.block_bytes(&hash)? {
            sink.push(TreeId::Blocks, &hash.0, &block).map_err(io)?;
        }
    }
    for item in storage.tree(TreeId::Commits).range(..=upto) {
        let (k, v) = item.map_err(crate::storage::StorageError::from)?;
        sink.push(TreeId::Commits, &k, &v).map_err(io)?;
    }
    let mut pushed = Ok(());
    storage.index_scan(TreeId::TxIndex, &[], &[0xff; 32], |k, v| {
        let loc = TxLocation::from_bytes(v).map_err(|e| crate::storage::StorageError::Corrupt {
            tree: TreeId::TxIndex.name(),
            key: hex::encode(k),
            reason: e.to_string(),
        })?;
        if loc.height <= height {
            pushed = sink.push(TreeId::TxIndex, k, v);
        }
        Ok(pushed.is_ok())
    })?;
    pushed.map_err(io)?;
    Ok(())
}

/// The address history as it was at `height`: records at heights ≤ `height`, and at
/// `height + 1` those of the transactions then final at layer 1 (see the module comment).
fn write_address_history<W: Write>(
    storage: &Storage,
    height: u64,
    final_at_capture: &BTreeSet<Vec<u8>>,
    sink: &mut RecordSink<W>,
    path: &Path,
) -> Result<()> {
    let mut pushed = Ok(());
    storage.index_scan(TreeId::AddressTxs, &[], &[0xff; 72], |k, v| {
        let (at, txid) =
            history_height_and_txid(k).ok_or_else(|| crate::storage::StorageError::Corrupt {
                tree: TreeId::AddressTxs.name(),
                key: hex::encode(k),
                reason: "not an address history key".into(),
            })?;
        let keep = at <= height || (at == height + 1 && final_at_capture.contains(txid));
        if keep {
            pushed = sink.push(TreeId::AddressTxs, k, v);
        }
        Ok(pushed.is_ok())
    })?;
    pushed.map_err(io_at(path))?;
    Ok(())
}

/// The height and txid of an address history key (`key hash ‖ height ‖ time ‖ position ‖
/// txid`, `ledger::history::history_key`).
fn history_height_and_txid(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() != 20 + 8 + 8 + 4 + 32 {
        return None;
    }
    let height = u64::from_be_bytes(key[20..28].try_into().ok()?);
    Some((height, &key[40..]))
}

/// A backup of a database that no process has open (the node is stopped).
pub fn backup_offline(
    datadir: &Path,
    network: Network,
    to: &Path,
    interactive: bool,
) -> Result<BackupSummary> {
    let db = datadir.join(super::files::DB_DIR);
    if !db.is_dir() {
        return Err(BackupError::NoDatabase(db));
    }
    // The node's lock, so no node starts on the directory while it is read.
    let _lock = crate::storage::DataDirLock::acquire(datadir)
        .map_err(|e| BackupError::Refused(e.to_string()))?;
    let storage = Storage::open_default(&db)?;
    let capture = capture_state(&storage, network)?;
    write_backup_file(&storage, capture, to, interactive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::history::{history_key, Order};
    use crate::types::KeyHash;

    #[test]
    fn history_keys_are_read_back_as_written() {
        let order = Order {
            height: 0x0102_0304_0506_0708,
            time_ms: u64::MAX,
            position: 7,
        };
        let txid = Hash32([9; 32]);
        let key = history_key(&KeyHash([3; 20]), order, &txid);
        let (height, id) = history_height_and_txid(&key).unwrap();
        assert_eq!(height, order.height);
        assert_eq!(id, &txid.0[..]);
        assert_eq!(history_height_and_txid(&key[1..]), None);
    }
}
