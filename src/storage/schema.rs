//! The database layout: one sled tree per kind of record, and how keys are built.
//!
//! | tree            | key                              | value                  |
//! |-----------------|----------------------------------|------------------------|
//! | `meta`          | fixed names (`meta_key`)         | schema version, tip... |
//! | `block_hashes`  | height (u64 big endian)          | block hash             |
//! | `blocks`        | block hash                       | where the `Block` is in the block files |
//! | `commits`       | height (u64 big endian)          | `CommitCertificate`    |
//! | `tx_index`‡     | txid                             | `TxLocation`           |
//! | `utxos`§        | outpoint (txid ‖ index BE)       | `UtxoEntry`            |
//! | `utxo_states`*  | outpoint                         | `UtxoState` (absent = unspent) |
//! | `address_index`† | key hash ‖ outpoint             | empty                  |
//! | `masternodes`   | operator key                     | masternode record      |
//! | `peers`         | peer address                     | peer record            |
//! | `consensus`     | fixed names                      | engine safety state    |
//! | `final_txs`*    | txid                             | history order (`final_record`) ‖ `Transaction` final at layer 1, not yet in a block |
//! | `pending_txs`*  | txid                             | `Transaction` this node locked inputs for, not yet final |
//! | `address_txs`‡  | key hash ‖ height ‖ time ‖ position ‖ txid | empty (an address's history) |
//!
//! Trees marked * are layer 1's: kept in memory and in the layer-1 log, not in sled (see
//! `storage::layer1_log`). `utxos` holds confirmed outputs only; outputs of transactions final
//! at layer 1 are in memory, derived from `final_txs`. † Retired in schema 5 (the index is
//! built in memory from `utxos`, see `ledger::address`): emptied by the upgrade and never
//! written again; its id stays so a schema-4 log's redo and a schema-4 backup still decode.
//! ‡ Indexes that only grow: the layer-1 log holds their recent tail (in memory), run files
//! beside it the rest (`storage::indexes`); read them through `Storage::tx_location` and
//! `Storage::index_scan`. Their sled trees are empty from schema 7 on.
//! § In memory, made durable by the log's redo and set files beside the database
//! (`storage::utxo_set`); its sled tree is empty from schema 9 on.
//!
//! Big-endian heights keep sled's byte order equal to height order, so ranges scan in order.

use crate::types::{KeyHash, OutPoint};

/// Bumped whenever a record's encoding or a key layout changes. 2: the layer-1 trees moved
/// from sled to the layer-1 log, `final_txs` records carry their history order, and
/// `utxos`/`address_index` hold confirmed outputs only (schema 1 is upgraded at open). 3: the
/// same records; the layer-1 log also carries the redo of sled's commits (2 is upgraded at
/// open by writing the number, so a schema-2 binary refuses the log it could not read). 4:
/// block bodies live in the block files and `blocks` holds their locations (see
/// `storage::block_files`; 3 is upgraded at open by moving them). 5: `address_index` is no
/// longer kept (4 is upgraded at open by emptying it). 6: `tx_index` and `address_txs` keep
/// only their recent tail in sled, the rest in run files (see `storage::indexes`; 5 is
/// upgraded at open by writing the number, and the records move in the background). 7: their
/// tail lives in the layer-1 log, renamed `layer1-v2.log` (6 is upgraded at open: the log
/// renamed, sled's tails moved to run files before the node starts). 8: the chain tip keeps
/// the UTXO set's LtHash state, 2 KiB, instead of a 32-byte Ristretto point (7 is upgraded at
/// open by recomputing it from `utxos`). 9: `utxos` leaves sled for memory, the log's redo and
/// set files (`utxos-<commit>.set`), and the log, renamed `layer1-v3.log`, writes checkpoint
/// markers that name sled's coverage and the log's apart (8 is upgraded at open: sled's set
/// written as the first file, then sled's copy emptied).
pub const SCHEMA_VERSION: u32 = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TreeId {
    Meta,
    BlockHashes,
    Blocks,
    Commits,
    TxIndex,
    Utxos,
    UtxoStates,
    AddressIndex,
    Masternodes,
    Peers,
    Consensus,
    FinalTxs,
    PendingTxs,
    AddressTxs,
}

impl TreeId {
    pub const ALL: [TreeId; 14] = [
        TreeId::Meta,
        TreeId::BlockHashes,
        TreeId::Blocks,
        TreeId::Commits,
        TreeId::TxIndex,
        TreeId::Utxos,
        TreeId::UtxoStates,
        TreeId::AddressIndex,
        TreeId::Masternodes,
        TreeId::Peers,
        TreeId::Consensus,
        TreeId::FinalTxs,
        TreeId::PendingTxs,
        TreeId::AddressTxs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TreeId::Meta => "meta",
            TreeId::BlockHashes => "block_hashes",
            TreeId::Blocks => "blocks",
            TreeId::Commits => "commits",
            TreeId::TxIndex => "tx_index",
            TreeId::Utxos => "utxos",
            TreeId::UtxoStates => "utxo_states",
            TreeId::AddressIndex => "address_index",
            TreeId::Masternodes => "masternodes",
            TreeId::Peers => "peers",
            TreeId::Consensus => "consensus",
            TreeId::FinalTxs => "final_txs",
            TreeId::PendingTxs => "pending_txs",
            TreeId::AddressTxs => "address_txs",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the tree lives in the layer-1 log rather than in sled (for an index that only
    /// grows, its tail: the rest is in its run files).
    pub fn is_logged(self) -> bool {
        matches!(
            self,
            TreeId::UtxoStates
                | TreeId::FinalTxs
                | TreeId::PendingTxs
                | TreeId::TxIndex
                | TreeId::AddressTxs
        )
    }
}

/// Length of the history order that starts a `final_txs` record.
pub const FINAL_ORDER_LEN: usize = 20;

/// A `final_txs` record: the order the transaction takes in address histories (height,
/// milliseconds and position, big endian: see `ledger::history::Order`), then the
/// transaction's canonical bytes.
pub fn final_record(height: u64, time_ms: u64, position: u32, tx: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(FINAL_ORDER_LEN + tx.len());
    v.extend_from_slice(&height.to_be_bytes());
    v.extend_from_slice(&time_ms.to_be_bytes());
    v.extend_from_slice(&position.to_be_bytes());
    v.extend_from_slice(tx);
    v
}

/// A history order's parts: height, milliseconds, position.
pub type OrderParts = (u64, u64, u32);

/// The parts of a `final_txs` record: the history order and the transaction's bytes.
pub fn split_final_record(raw: &[u8]) -> Option<(OrderParts, &[u8])> {
    if raw.len() < FINAL_ORDER_LEN {
        return None;
    }
    let (order, tx) = raw.split_at(FINAL_ORDER_LEN);
    let height = u64::from_be_bytes(order[..8].try_into().ok()?);
    let time = u64::from_be_bytes(order[8..16].try_into().ok()?);
    let position = u32::from_be_bytes(order[16..20].try_into().ok()?);
    Some(((height, time, position), tx))
}

/// Names of the records in the `meta` tree.
pub mod meta_key {
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    /// The committed chain tip (`ChainTip`), written in the same batch as its block.
    pub const TIP: &[u8] = b"tip";
    /// Present once `address_txs` holds the history of every stored transaction (databases
    /// from before the index get it built once at open).
    pub const ADDRESS_HISTORY: &[u8] = b"address_history_v2";
    /// Present while a schema-3 database's block bodies move to the block files (schema 4):
    /// an open resumes the move.
    pub const MOVING_BLOCK_BODIES: &[u8] = b"moving_block_bodies";
}

pub fn height_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

pub fn address_key(key_hash: &KeyHash, outpoint: &OutPoint) -> [u8; 56] {
    let mut k = [0u8; 56];
    k[..20].copy_from_slice(&key_hash.0);
    k[20..].copy_from_slice(&outpoint.to_key());
    k
}
