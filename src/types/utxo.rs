//! Records of the UTXO set and the layer-1 state of each output.
//!
//! ```text
//! Unspent ──lock(tx)──► Locked(tx) ──quorum──► SpentFinalized(tx) ──block──► (removed: Confirmed)
//! ```
//! An output is `Confirmed`-spent when a committed block spends it; it then leaves the set and
//! the transaction index records where. Outputs of a final transaction join the set at once, as
//! unconfirmed, so a wallet can spend change before any block contains it.

use super::transaction::{TxOutput, Txid};
use bincode::{Decode, Encode};

/// An unspent output and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UtxoEntry {
    pub output: TxOutput,
    /// Height of the block that created it; `None` while its transaction is final at layer 1
    /// but not yet in a block.
    pub height: Option<u64>,
    pub coinbase: bool,
}

impl UtxoEntry {
    pub fn is_confirmed(&self) -> bool {
        self.height.is_some()
    }
}

crate::canonical!(UtxoEntry, "utxo entry", 128);

/// Layer-1 state of an output still in the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum UtxoState {
    Unspent,
    /// This node voted for `txid` spending it, and will never vote for another spend.
    Locked(Txid),
    /// A quorum voted for `txid`: the spend is final though not yet in a block.
    SpentFinalized(Txid),
}

crate::canonical!(UtxoState, "utxo state", 64);

/// Where a transaction sits in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TxLocation {
    pub height: u64,
    pub index: u32,
}

crate::canonical!(TxLocation, "transaction location", 32);
