//! Restoring a backup into a data directory: records go into a database in a temporary
//! directory; only when the checksum, the per-tree counts, the tip and the recomputed UTXO
//! commitment all agree with the header, and the chain is this node's (its network and
//! genesis are the configured ones, and every certificate from genesis to the tip verifies,
//! with `HeaderChain`, the code fast sync and snapshot import run), does a rename put it in
//! place. A backup is a file someone hands the operator: it is trusted no more than a peer.

use super::container::{ContainerReader, Kind};
use super::dump::{BackupChunk, BackupHeader};
use super::files::Staging;
use super::progress::{CountingReader, Progress};
use super::{io_at, BackupError, Result};
use crate::config::NodeParams;
use crate::consensus::driver::header_page;
use crate::consensus::snapshot::HeaderChain;
use crate::consensus::{set_store, MasternodeSet};
use crate::ledger::Ledger;
use crate::storage::{Storage, TreeId, WriteBatch, SCHEMA_VERSION};
use std::path::Path;
use std::time::Instant;

/// The oldest database schema a backup may hold: earlier ones are of chains whose headers
/// commit to the UTXO set the old way (before the LtHash commitment).
const OLDEST_RESTORABLE_SCHEMA: u32 = 8;

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

/// Restores `from` into `<datadir>/db`, if it is a backup of the chain `chain` configures
/// (network, genesis). The data directory must not hold a database unless `force` (then the
/// old one is kept beside the new one). `interactive` allows a progress bar.
pub fn restore(
    from: &Path,
    chain: &NodeParams,
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
    let header = BackupHeader::decode(&raw_header).map_err(|e| reader.corrupt(e.to_string()))?;
    let (genesis_block, genesis_set) = chain.genesis.build();
    if header.network != chain.network || header.genesis != genesis_block.hash() {
        return Err(BackupError::WrongChain {
            found: format!("{} with genesis {}", header.network, header.genesis),
            expected: format!("{} with genesis {}", chain.network, genesis_block.hash()),
        });
    }
    // Schema 8 keeps the UTXO commitment's LtHash state in the tip record; a backup of an
    // earlier schema holds the old 32-byte accumulator, and its chain's headers commit with
    // it (the genesis check above refuses those chains already; this names the cause should
    // a file claim the genesis anyway).
    if !(OLDEST_RESTORABLE_SCHEMA..=SCHEMA_VERSION).contains(&header.schema_version) {
        return Err(BackupError::Refused(format!(
            "the backup holds database schema {}, this timed restores schemas \
             {OLDEST_RESTORABLE_SCHEMA} to {SCHEMA_VERSION} (schema 8 changed the UTXO \
             commitment, and with it every chain's headers)",
            header.schema_version
        )));
    }
    let staging = Staging::prepare(datadir, force)?;
    let db_path = staging.db_path();
    let counts = {
        let storage = Storage::open(&db_path, RESTORE_CACHE_BYTES)?;
        let counts = load_records(&mut reader, &storage)?;
        // A checkpoint, not only a flush: the node that starts on it has no redo to apply.
        storage.checkpoint()?;
        counts
    };
    reader.into_inner().finish();
    let records = counts.iter().sum();
    verify_restored(
        &db_path,
        &header,
        HeaderChain::new(
            header.network,
            genesis_block.hash(),
            MasternodeSet::new(0, genesis_set.members().cloned()),
        ),
    )?;
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

/// Writes every record chunk into `storage`; checks the final per-tree counts and the
/// checksum. Returns the counts.
fn load_records<R: std::io::Read>(
    reader: &mut ContainerReader<R>,
    storage: &Storage,
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
                let mut batch = WriteBatch::new();
                for r in records {
                    let i = r.tree as usize;
                    let Some(tree) = TreeId::ALL.get(i) else {
                        return Err(BackupError::from(
                            reader.corrupt(format!("a record of unknown tree {i}")),
                        ));
                    };
                    counts[i] += 1;
                    if *tree != TreeId::AddressIndex {
                        batch.put_raw(*tree, r.key, r.value);
                    }
                }
                // The staging directory is installed only after the whole restore checks out:
                // no need for one atomic batch per chunk.
                storage.import(batch)?;
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

/// Opens the restored database as the node would and checks it against the header and,
/// from `chain` (at genesis), every certificate up to its tip.
fn verify_restored(db: &Path, header: &BackupHeader, chain: HeaderChain) -> Result<()> {
    let storage = Storage::open(db, RESTORE_CACHE_BYTES)?;
    verify_certificates(&storage, header, chain)?;
    let ledger = Ledger::open(
        storage.clone(),
        crate::ledger::LedgerParams::of(header.network),
    )?;
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
    // A checkpoint, not only a flush: the node that starts on it has no redo to apply.
    storage.checkpoint()?;
    Ok(())
}

/// Every header 1..=H of the restored database, with its certificate, verified from the
/// configured genesis set (and the set changes they announce); the tip must be the header's,
/// and the stored masternode set the one the certified chain arrives at.
fn verify_certificates(
    storage: &Storage,
    header: &BackupHeader,
    mut chain: HeaderChain,
) -> Result<()> {
    while chain.height() < header.height {
        let from = chain.height() + 1;
        let page: Vec<_> = header_page(storage, from)?
            .into_iter()
            .filter(|e| e.header.height <= header.height)
            .collect();
        if page.is_empty() {
            return Err(BackupError::Refused(format!(
                "the backup holds no certified header at height {from}, so its chain cannot be \
                 checked from genesis (a backup of a fast-synced node): start from a snapshot \
                 instead (`timed snapshot export` on a node with the whole chain, then \
                 `timed snapshot import`)"
            )));
        }
        chain
            .extend(&page)
            .map_err(|e| BackupError::Verify(format!("the backup's chain: {e}")))?;
    }
    if header.height > 0 {
        let tip = chain.last().map(|e| e.header.hash());
        if tip != Some(header.best_hash) {
            return Err(BackupError::Mismatch(format!(
                "its certified chain ends at {tip:?}, the header says {}",
                header.best_hash
            )));
        }
    }
    let stored = set_store::load_at(storage, header.height)?;
    if stored.hash() != chain.sets().0.hash() {
        return Err(BackupError::Mismatch(format!(
            "its masternode set at {} is {}, the certified chain says {}",
            header.height,
            stored.hash(),
            chain.sets().0.hash()
        )));
    }
    Ok(())
}
