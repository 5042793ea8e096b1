//! UTXO snapshot files: the confirmed set at a certified height T with the certified headers
//! 1..=T, so a new node can start from T trusting only its genesis, exactly as fast sync does
//! over the network (and with the same code: `HeaderChain`, `check_snapshot`,
//! `ConsensusDriver::import_snapshot`).
//!
//! ```text
//! header (network, genesis, T, hash, commitment, outputs)
//! ‖ Headers(page)…  (headers 1..=T, certificates, set changes)
//! ‖ Outputs(page)…  (outpoint order, with the serving node's layer-1 locks)
//! ```

use super::container::{ContainerReader, ContainerWriter, Kind, MAX_CHUNK_BYTES, MAX_HEADER_BYTES};
use super::files::{write_new_file, Staging};
use super::progress::{CountingReader, Progress};
use super::{io_at, BackupError, Result};
use crate::clock::wall_clock_ms;
use crate::config::NodeParams;
use crate::consensus::bft::BftConfig;
use crate::consensus::driver::{header_page, ConsensusDriver, DriverConfig};
use crate::consensus::snapshot::{check_snapshot, HeaderChain, HeaderEntry, SNAPSHOT_PAGE};
use crate::consensus::MasternodeSet;
use crate::ledger::snapshot::SnapshotEntry;
use crate::ledger::Ledger;
use crate::mempool::PoolLimits;
use crate::storage::{ChainTip, Storage};
use crate::types::{codec, Hash32, Network};
use bincode::{Decode, Encode};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Most outputs a snapshot file may hold: the fast-sync limit (20 million, about 2 GiB in
/// memory while checked).
pub const MAX_SNAPSHOT_OUTPUTS: u64 = 20_000_000;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotHeader {
    pub network: Network,
    pub genesis: Hash32,
    pub height: u64,
    pub best_hash: Hash32,
    pub utxo_commitment: Hash32,
    pub outputs: u64,
    pub created_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum SnapshotChunk {
    Headers(Vec<HeaderEntry>),
    Outputs(Vec<SnapshotEntry>),
}

impl SnapshotChunk {
    pub fn decode(raw: &[u8]) -> std::result::Result<Self, codec::CodecError> {
        codec::decode::<SnapshotChunk, MAX_CHUNK_BYTES>("snapshot chunk", raw)
    }
}

pub fn decode_header(raw: &[u8]) -> std::result::Result<SnapshotHeader, codec::CodecError> {
    codec::decode::<SnapshotHeader, MAX_HEADER_BYTES>("snapshot header", raw)
}

/// What a snapshot file holds (Bitcoin's `dumptxoutset` names).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SnapshotSummary {
    pub path: String,
    pub base_height: u64,
    pub base_hash: String,
    pub txoutset_hash: String,
    pub coins_written: u64,
    pub bytes: u64,
}

/// Writes the snapshot `entries` taken at `tip` (from `Ledger::snapshot_entries`, so the
/// two agree) with the certified headers up to it, read from `storage`.
pub fn write_snapshot_file(
    storage: &Storage,
    network: Network,
    tip: &ChainTip,
    entries: &[SnapshotEntry],
    path: &Path,
) -> Result<SnapshotSummary> {
    if tip.height == 0 {
        return Err(BackupError::Refused(
            "the chain has no certified block yet; nothing to snapshot".into(),
        ));
    }
    let genesis = storage.block_hash_at(0)?.ok_or(BackupError::NoTip)?;
    let block = storage.block_at(tip.height)?.ok_or_else(|| {
        BackupError::Refused(format!(
            "this node has no header at its tip {} (it was fast-synced there); export after \
             the next block",
            tip.height
        ))
    })?;
    let header = SnapshotHeader {
        network,
        genesis,
        height: tip.height,
        best_hash: tip.hash,
        utxo_commitment: block.header.utxo_commitment,
        outputs: entries.len() as u64,
        created_ms: wall_clock_ms(),
    };
    let bytes = write_new_file(path, |file| {
        let mut out = ContainerWriter::new(file, Kind::Snapshot, &codec::encode(&header))
            .map_err(io_at(path))?;
        let mut from = 1;
        while from <= tip.height {
            let page: Vec<HeaderEntry> = header_page(storage, from)?
                .into_iter()
                .filter(|e| e.header.height <= tip.height)
                .collect();
            let Some(last) = page.last() else {
                return Err(BackupError::Refused(format!(
                    "this node has no certified header at height {from} (it was fast-synced \
                     past it); export from a node that holds the whole chain"
                )));
            };
            from = last.header.height + 1;
            out.chunk(&codec::encode(&SnapshotChunk::Headers(page)))
                .map_err(io_at(path))?;
        }
        for page in entries.chunks(SNAPSHOT_PAGE) {
            out.chunk(&codec::encode(&SnapshotChunk::Outputs(page.to_vec())))
                .map_err(io_at(path))?;
        }
        Ok(out.finish().map_err(io_at(path))?.1)
    })?;
    tracing::info!(
        path = %path.display(),
        height = header.height,
        outputs = entries.len(),
        bytes,
        "UTXO snapshot written"
    );
    Ok(SnapshotSummary {
        path: path.display().to_string(),
        base_height: header.height,
        base_hash: header.best_hash.to_hex(),
        txoutset_hash: header.utxo_commitment.to_hex(),
        coins_written: header.outputs,
        bytes,
    })
}

/// A snapshot of a database no process has open (the node is stopped).
pub fn export_offline(params: &NodeParams, to: &Path) -> Result<SnapshotSummary> {
    let db = params.datadir.join(super::files::DB_DIR);
    if !db.is_dir() {
        return Err(BackupError::NoDatabase(db));
    }
    let storage = Storage::open_default(&db)?;
    let ledger = Ledger::open(
        storage.clone(),
        crate::ledger::LedgerParams::of(params.network),
    )?;
    let (tip, entries) = ledger.snapshot_entries();
    let tip = tip.ok_or(BackupError::NoTip)?;
    write_snapshot_file(&storage, params.network, &tip, &entries, to)
}

/// A snapshot file read to its end, its checksum matched and its content verified against the
/// chain from genesis: what `import` installs.
pub struct VerifiedSnapshot {
    pub header: SnapshotHeader,
    /// The outputs, in outpoint order, as many as the header declares.
    pub entries: Vec<SnapshotEntry>,
    /// The certified header at the snapshot's height, naming its UTXO commitment.
    pub last: HeaderEntry,
    /// The certified chain up to that height (its masternode sets come along).
    pub chain: HeaderChain,
}

/// Reads a snapshot container from `input` and verifies it for the chain that starts with
/// `genesis_block` and `genesis_set`: the network and genesis it names, every certificate
/// from genesis to its height, the outputs' order and count, and the commitment they make.
/// Returns the input for the caller to close (a progress report).
pub fn read_verified<R: std::io::Read>(
    input: R,
    network: Network,
    genesis_block: &crate::types::Block,
    genesis_set: &MasternodeSet,
) -> Result<(VerifiedSnapshot, R)> {
    let (mut reader, raw_header) = ContainerReader::open(input, Kind::Snapshot)?;
    let header = decode_header(&raw_header).map_err(|e| reader.corrupt(e.to_string()))?;
    if header.network != network || header.genesis != genesis_block.hash() {
        return Err(BackupError::WrongChain {
            found: format!("{} with genesis {}", header.network, header.genesis),
            expected: format!("{} with genesis {}", network, genesis_block.hash()),
        });
    }
    if header.outputs > MAX_SNAPSHOT_OUTPUTS {
        return Err(BackupError::Refused(format!(
            "a snapshot of {} outputs (at most {MAX_SNAPSHOT_OUTPUTS})",
            header.outputs
        )));
    }

    // Read and verify everything before a database is even created.
    let mut chain = HeaderChain::new(
        network,
        genesis_block.hash(),
        MasternodeSet::new(0, genesis_set.members().cloned()),
    );
    let mut entries: Vec<SnapshotEntry> = Vec::new();
    let mut refusal = None;
    while let Some(raw) = reader.next_chunk()? {
        match SnapshotChunk::decode(&raw).map_err(|e| reader.corrupt(e.to_string()))? {
            SnapshotChunk::Headers(page) => {
                if !entries.is_empty() {
                    return Err(BackupError::from(
                        reader.corrupt("headers follow the outputs"),
                    ));
                }
                // A failed header is reported after the checksum: a damaged file should
                // say "corrupt", not look like a forgery.
                if refusal.is_none() {
                    refusal = chain.extend(&page).err().map(|e| e.to_string());
                }
            }
            SnapshotChunk::Outputs(page) => {
                if (entries.len() + page.len()) as u64 > header.outputs {
                    return Err(BackupError::from(reader.corrupt(format!(
                        "more outputs than the {} it declares",
                        header.outputs
                    ))));
                }
                for e in page {
                    if entries.last().is_some_and(|(prev, _, _)| *prev >= e.0) {
                        return Err(BackupError::from(
                            reader.corrupt("outputs out of order or repeated"),
                        ));
                    }
                    entries.push(e);
                }
            }
        }
    }
    let input = reader.into_inner();
    if let Some(reason) = refusal {
        return Err(BackupError::Verify(reason));
    }
    if entries.len() as u64 != header.outputs {
        return Err(BackupError::Mismatch(format!(
            "{} outputs, the header declares {}",
            entries.len(),
            header.outputs
        )));
    }
    let last = check_snapshot(&chain, header.height, &entries)
        .map_err(|e| BackupError::Verify(e.to_string()))?
        .clone();
    if last.header.hash() != header.best_hash
        || last.header.utxo_commitment != header.utxo_commitment
    {
        return Err(BackupError::Mismatch(format!(
            "the certified header at {} is {} committing to {}, the file names {} and {}",
            header.height,
            last.header.hash(),
            last.header.utxo_commitment,
            header.best_hash,
            header.utxo_commitment
        )));
    }
    Ok((
        VerifiedSnapshot {
            header,
            entries,
            last,
            chain,
        },
        input,
    ))
}

/// What an import installed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImportSummary {
    pub datadir: String,
    pub height: u64,
    pub bestblockhash: String,
    pub utxocommitment: String,
    pub outputs: u64,
    pub seconds: f64,
}

/// Verifies the snapshot `from` against the chain of `params` (network, genesis, and every
/// certificate from genesis to its height) and installs it as a new database in `datadir`.
/// Nothing is installed unless all of it verifies.
pub fn import(
    from: &Path,
    params: &NodeParams,
    datadir: &Path,
    force: bool,
    interactive: bool,
) -> Result<ImportSummary> {
    let started = Instant::now();
    let file = std::fs::File::open(from).map_err(io_at(from))?;
    let size = file.metadata().map_err(io_at(from))?.len();
    let input = CountingReader::new(
        std::io::BufReader::new(file),
        Progress::new("importing snapshot", Some(size), interactive),
    );
    let (genesis_block, genesis_set) = params.genesis.build();
    let (verified, input) = read_verified(input, params.network, &genesis_block, &genesis_set)?;
    input.finish();
    let VerifiedSnapshot {
        header,
        entries,
        last,
        chain,
    } = verified;
    let (set, prev_set) = chain.sets();
    let (set, prev_set) = (set.clone(), prev_set.clone());
    let outputs = entries.len() as u64;

    let staging = Staging::prepare(datadir, force)?;
    {
        let storage = Storage::open_default(&staging.db_path())?;
        let ledger = Arc::new(Ledger::open(
            storage.clone(),
            crate::ledger::LedgerParams::of(params.network),
        )?);
        let cfg = DriverConfig {
            network: params.network,
            key: None,
            finality: params.finality_config(),
            bft: BftConfig::new(params.network, params.block_interval_ms),
            pool: PoolLimits::default(),
            max_block_txs: crate::consensus::driver::MAX_BLOCK_TXS,
        };
        let now = wall_clock_ms();
        let (mut driver, _) = ConsensusDriver::open(cfg, ledger, &params.genesis, now)?;
        driver
            .import_snapshot(&last, set, prev_set, entries, now)?
            .map_err(|e| BackupError::Verify(e.to_string()))?;
        // A checkpoint, not only a flush: the node that starts on it has no redo to apply.
        storage.checkpoint()?;
    }
    staging.install()?;
    tracing::info!(
        datadir = %datadir.display(),
        height = header.height,
        outputs,
        "UTXO snapshot imported"
    );
    Ok(ImportSummary {
        datadir: datadir.display().to_string(),
        height: header.height,
        bestblockhash: header.best_hash.to_hex(),
        utxocommitment: header.utxo_commitment.to_hex(),
        outputs,
        seconds: started.elapsed().as_secs_f64(),
    })
}
