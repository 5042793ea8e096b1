//! Restoring a backup into a data directory: records go into a database in a temporary
//! directory; only when the checksum, the per-tree counts, the tip and the recomputed UTXO
//! commitment all agree with the header does a rename put it in place.

use super::container::{ContainerReader, Kind};
use super::dump::{BackupChunk, BackupHeader};
use super::files::Staging;
use super::progress::{CountingReader, Progress};
use super::{io_at, BackupError, Result};
use crate::ledger::Ledger;
use crate::storage::{Storage, TreeId, SCHEMA_VERSION};
use crate::types::codec;
use std::path::Path;
use std::time::Instant;

/// Page cache while restoring: the writes are sequential.
const RESTORE_CACHE_BYTES: u64 = 64 << 20;

/// What a restore installed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreSummary {
    pub datadir: String,
    pub network: String,
    pub height: u64,
    pub bestblockhash: String,
    pub utxocommitment: String,
    pub records: u64,
    pub seconds: f64,
}

/// Restores `from` into `<datadir>/db`. The data directory must not hold a database unless
/// `force` (then the old one is kept beside the new one). `interactive` allows a progress bar.
pub fn restore(
    from: &Path,
    datadir: &Path,
    force: bool,
    interactive: bool,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    let file = std::fs::File::open(from).map_err(io_at(from))?;
    let size = file.metadata().map_err(io_at(from))?.len();
    let input = CountingReader::new(
        std::io::BufReader::new(file),
        Progress::new("restoring", Some(size), interactive),
    );
    let (mut reader, raw_header) = ContainerReader::open(input, Kind::Backup)?;
    let header: BackupHeader =
        codec::decode::<BackupHeader, { super::container::MAX_HEADER_BYTES }>(
            "backup header",
            &raw_header,
        )
        .map_err(|e| reader.corrupt(e.to_string()))?;
    if header.schema_version != SCHEMA_VERSION {
        return Err(BackupError::Refused(format!(
            "the backup holds database schema {}, this timed uses {SCHEMA_VERSION}",
            header.schema_version
        )));
    }
    let staging = Staging::prepare(datadir, force)?;
    let db_path = staging.db_path();
    let counts = {
        let db = sled::Config::new()
            .path(&db_path)
            .cache_capacity(RESTORE_CACHE_BYTES)
            .open()
            .map_err(crate::storage::StorageError::from)?;
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(crate::storage::StorageError::from)?;
        let counts = load_records(&mut reader, &trees)?;
        db.flush().map_err(crate::storage::StorageError::from)?;
        counts
    };
    reader.into_inner().finish();
    let records = counts.iter().sum();
    verify_restored(&db_path, &header)?;
    let installed = staging.install()?;
    let summary = RestoreSummary {
        datadir: datadir.display().to_string(),
        network: header.network.name().to_string(),
        height: header.height,
        bestblockhash: header.best_hash.to_hex(),
        utxocommitment: header.utxo_commitment.to_hex(),
        records,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(db = %installed.display(), height = header.height, records, "backup restored");
    Ok(summary)
}

/// Writes every record chunk into `trees`; checks the final per-tree counts and the
/// checksum. Returns the counts.
fn load_records<R: std::io::Read>(
    reader: &mut ContainerReader<R>,
    trees: &[sled::Tree],
) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; TreeId::ALL.len()];
    let mut declared: Option<Vec<(String, u64)>> = None;
    while let Some(raw) = reader.next_chunk()? {
        let chunk = BackupChunk::decode(&raw).map_err(|e| reader.corrupt(e.to_string()))?;
        if declared.is_some() {
            return Err(BackupError::from(
                reader.corrupt("records follow the closing counts"),
            ));
        }
        match chunk {
            BackupChunk::Counts(c) => declared = Some(c),
            BackupChunk::Records(records) => {
                let mut batches: Vec<sled::Batch> =
                    (0..trees.len()).map(|_| sled::Batch::default()).collect();
                for r in records {
                    let i = r.tree as usize;
                    if i >= trees.len() {
                        return Err(BackupError::from(
                            reader.corrupt(format!("a record of unknown tree {i}")),
                        ));
                    }
                    counts[i] += 1;
                    batches[i].insert(r.key, r.value);
                }
                for (tree, batch) in trees.iter().zip(batches) {
                    tree.apply_batch(batch)
                        .map_err(crate::storage::StorageError::from)?;
                }
            }
        }
    }
    let declared =
        declared.ok_or_else(|| BackupError::Content("the record counts are missing".into()))?;
    let expected: Vec<(String, u64)> = TreeId::ALL
        .iter()
        .map(|t| (t.name().to_string(), counts[t.index()]))
        .collect();
    if declared != expected {
        return Err(BackupError::Mismatch(format!(
            "records per tree {expected:?}, the file declares {declared:?}"
        )));
    }
    Ok(counts)
}

/// Opens the restored database as the node would and checks it against the header.
fn verify_restored(db: &Path, header: &BackupHeader) -> Result<()> {
    let storage = Storage::open(db, RESTORE_CACHE_BYTES)?;
    let ledger = Ledger::open(storage.clone(), crate::node::ledger_params(header.network))?;
    let tip = ledger.tip().ok_or(BackupError::NoTip)?;
    if tip.height != header.height || tip.hash != header.best_hash {
        return Err(BackupError::Mismatch(format!(
            "its tip is {} at height {}, the header says {} at {}",
            tip.hash, tip.height, header.best_hash, header.height
        )));
    }
    if storage.block_hash_at(0)? != Some(header.genesis) {
        return Err(BackupError::Mismatch(format!(
            "its genesis is not {}",
            header.genesis
        )));
    }
    let recomputed = ledger.recompute_commitment().digest();
    let stored = ledger.commitment().digest();
    if recomputed != header.utxo_commitment || stored != header.utxo_commitment {
        return Err(BackupError::Mismatch(format!(
            "its UTXO set commits to {recomputed} (stored accumulator {stored}), the header \
             says {}",
            header.utxo_commitment
        )));
    }
    // The certified header at the tip names the same commitment (absent on a node that was
    // fast-synced to exactly this height: its tip has no body).
    if let Some(block) = storage.block_at(header.height)? {
        if block.header.utxo_commitment != header.utxo_commitment {
            return Err(BackupError::Mismatch(format!(
                "block {} commits to {}, the UTXO set to {}",
                header.height, block.header.utxo_commitment, header.utxo_commitment
            )));
        }
    }
    storage.flush()?;
    Ok(())
}
