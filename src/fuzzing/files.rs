//! Targets for the files an operator hands the node: the config file, the genesis file, and
//! backup and UTXO snapshot containers.
//!
//! A container ends in a BLAKE3 checksum of everything before it, which no mutation of the
//! raw bytes survives; so the two container targets take the input two ways, chosen by its
//! first byte: as a whole file ([`RAW`]), and as pieces (`u16` little-endian length, then the
//! bytes: the header, then each chunk) that the target packs into a well-formed container
//! first ([`PIECES`]), so the decoders behind the checksum see fuzzed content too.

use super::split_pieces;
use crate::backup::container::{ContainerReader, ContainerWriter, Kind};
use crate::backup::dump::{BackupChunk, BackupHeader};
use crate::backup::snapshot::{read_verified, SnapshotChunk};
use crate::config::genesis::GenesisFile;
use crate::config::{Effective, NodeConfig, Overrides};
use crate::consensus::genesis::{GenesisMasternode, GenesisSpec};
use crate::consensus::MasternodeSet;
use crate::types::{codec, Amount, Block, Network, SecretKey, Tier};
use std::sync::OnceLock;

/// First byte of a container input: the rest is a whole file.
pub const RAW: u8 = 0;
/// First byte of a container input: the rest is pieces to pack into a container.
pub const PIECES: u8 = 1;

/// The chain the snapshot target verifies against: one Bronze masternode whose operator key
/// is `SecretKey::from_bytes(&[1; 32])`, on localnet.
pub fn genesis_spec() -> GenesisSpec {
    let operator = SecretKey::from_bytes(&[1; 32]);
    let owner = SecretKey::from_bytes(&[2; 32]).public_key().key_hash();
    GenesisSpec {
        timestamp_ms: 1_000,
        rules: Default::default(),
        allocations: vec![(owner, Amount(1_000_000))],
        masternodes: vec![GenesisMasternode::new(
            Tier::Bronze,
            &operator,
            owner,
            "127.0.0.1:24200".into(),
        )],
    }
}

/// The genesis block and set of [`genesis_spec`], built once per process: targets need them
/// on every input, and building hashes the set and the coinbase.
pub fn genesis() -> &'static (Block, MasternodeSet) {
    static GENESIS: OnceLock<(Block, MasternodeSet)> = OnceLock::new();
    GENESIS.get_or_init(|| genesis_spec().build())
}

/// The container file the input stands for: itself, or its pieces packed.
fn container_bytes(data: &[u8], kind: Kind) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    match mode {
        RAW => Some(rest.to_vec()),
        PIECES => {
            let pieces = split_pieces(rest);
            let (header, chunks) = pieces.split_first()?;
            write_container(kind, header, chunks)
        }
        _ => None,
    }
}

/// A container written by the node's writer (`None` where the writer refuses a part).
fn write_container<C: AsRef<[u8]>>(kind: Kind, header: &[u8], chunks: &[C]) -> Option<Vec<u8>> {
    let mut w = ContainerWriter::new(Vec::new(), kind, header).ok()?;
    for c in chunks {
        w.chunk(c.as_ref()).ok()?;
    }
    w.finish().ok().map(|(bytes, _)| bytes)
}

/// Reads a whole container the way restore and import do. Returns the header and the
/// chunks if the file was complete and its checksum matched.
fn read_container(bytes: &[u8], kind: Kind) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let (mut reader, header) = ContainerReader::open(bytes, kind).ok()?;
    let mut chunks = Vec::new();
    loop {
        match reader.next_chunk() {
            Ok(Some(c)) => chunks.push(c),
            Ok(None) => return Some((header, chunks)),
            Err(_) => return None,
        }
    }
}

/// Property of every container: a file that reads back whole is written again, by the
/// writer, into one that reads back to the same header and chunks.
fn rewrite_reads_back(kind: Kind, header: &[u8], chunks: &[Vec<u8>]) {
    let Some(written) = write_container(kind, header, chunks) else {
        panic!("a container that was read cannot be written again");
    };
    let again = read_container(&written, kind);
    assert_eq!(
        again.as_ref().map(|(h, c)| (h.as_slice(), c.as_slice())),
        Some((header, chunks)),
        "a rewritten container reads back differently"
    );
}

/// A backup file (`timed restore`): the container, its header and each chunk of records
/// decoded as restore decodes them. Properties: see [`rewrite_reads_back`]; decoded headers
/// and chunks are canonical.
pub fn backup_file(data: &[u8]) {
    let Some(bytes) = container_bytes(data, Kind::Backup) else {
        return;
    };
    let Some((header, chunks)) = read_container(&bytes, Kind::Backup) else {
        return;
    };
    rewrite_reads_back(Kind::Backup, &header, &chunks);
    if let Ok(h) = BackupHeader::decode(&header) {
        assert_eq!(
            codec::encode(&h),
            header,
            "a backup header re-encodes differently"
        );
    }
    chunks_are_canonical(&chunks, BackupChunk::decode);
}

/// Property of the decoded chunks of a container: each re-encodes to its own bytes.
fn chunks_are_canonical<T: bincode::Encode>(
    chunks: &[Vec<u8>],
    decode: fn(&[u8]) -> Result<T, codec::CodecError>,
) {
    for raw in chunks {
        if let Ok(chunk) = decode(raw) {
            assert_eq!(
                &codec::encode(&chunk),
                raw,
                "a chunk re-encodes differently"
            );
        }
    }
}

/// A UTXO snapshot file (`timed snapshot import`): read and verified by the same function
/// import uses, against [`genesis_spec`]'s chain. Properties: see [`rewrite_reads_back`]; a
/// snapshot that verifies is complete (as many outputs as declared, in order, committing to
/// the certified header's commitment).
pub fn snapshot_file(data: &[u8]) {
    let Some(bytes) = container_bytes(data, Kind::Snapshot) else {
        return;
    };
    if let Some((header, chunks)) = read_container(&bytes, Kind::Snapshot) {
        rewrite_reads_back(Kind::Snapshot, &header, &chunks);
        chunks_are_canonical(&chunks, SnapshotChunk::decode);
    }
    let (genesis, set) = genesis();
    if let Ok((v, _)) = read_verified(&bytes[..], Network::Localnet, genesis, set) {
        assert_eq!(v.entries.len() as u64, v.header.outputs);
        assert!(v.entries.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(v.last.header.height, v.header.height);
        assert_eq!(v.last.header.hash(), v.header.best_hash);
        let _: &MasternodeSet = v.chain.sets().0;
    }
}

/// A config file's text, parsed as the node parses it and validated with every other source
/// empty (the genesis file left out: it has its own target, and a fuzzed path could name a
/// file that never ends). Properties: a parsed config prints as TOML that parses to the same
/// config; validation and `--print-config` never panic.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = NodeConfig::parse(text) else {
        return;
    };
    let printed = match toml::to_string(&cfg) {
        Ok(p) => p,
        Err(e) => panic!("a parsed config does not print as TOML: {e}"),
    };
    assert_eq!(
        NodeConfig::parse(&printed).as_ref(),
        Ok(&cfg),
        "a config does not survive printing: {printed}"
    );
    let over = Overrides {
        keys: NodeConfig {
            genesis: None,
            ..cfg
        },
        ..Overrides::default()
    };
    if let Ok(effective) = Effective::gather(&over) {
        let _ = effective.render();
    }
}

/// A genesis file's text, parsed and validated as the node does for localnet, then built
/// into the genesis block. Properties: the parsed file prints as JSON that gives the same
/// genesis block and masternode set; the genesis block passes the structural checks every
/// other block must pass.
pub fn genesis_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((file, spec)) = GenesisFile::parse(text, Network::Localnet) else {
        return;
    };
    let printed = match serde_json::to_string(&file) {
        Ok(p) => p,
        Err(e) => panic!("a parsed genesis file does not print: {e}"),
    };
    let again = match GenesisFile::parse(&printed, Network::Localnet) {
        Ok((_, s)) => s,
        Err(e) => panic!("a printed genesis file does not parse: {e}"),
    };
    let (block, set) = spec.build();
    let (block2, set2) = again.build();
    assert_eq!(
        block.hash(),
        block2.hash(),
        "printing changed the genesis block"
    );
    assert_eq!(set.hash(), set2.hash(), "printing changed the genesis set");
    genesis_block_is_well_formed(&block);
}

fn genesis_block_is_well_formed(block: &Block) {
    if let Err(e) = block.check_structure() {
        panic!("a genesis file that validates builds a malformed block: {e}");
    }
}
