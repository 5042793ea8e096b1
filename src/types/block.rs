//! Blocks, their headers, and the commit certificates that make them final.

use super::codec::{self, MAX_BLOCK_BYTES, MAX_VOTE_BYTES};
use super::evidence::{evidence_root, Evidence, EvidenceError};
use super::hash::{merkle_root, tag, Hash32};
use super::keys::PublicKey;
use super::transaction::{Transaction, TxError, Txid};
use super::vote::ConsensusVote;
use bincode::{Decode, Encode};
use std::collections::HashSet;
use std::sync::Arc;

pub const BLOCK_VERSION: u32 = 1;
/// Most pieces of equivocation evidence one block carries (consensus rule).
pub const MAX_BLOCK_EVIDENCE: usize = 8;

pub type BlockHash = Hash32;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct BlockHeader {
    pub version: u32,
    pub height: u64,
    pub prev_hash: BlockHash,
    /// Milliseconds since the Unix epoch; strictly increasing along the chain.
    pub timestamp_ms: u64,
    /// The BFT round in which the block was proposed.
    pub round: u32,
    pub proposer: PublicKey,
    /// Merkle root of the txids, in block order.
    pub tx_root: Hash32,
    /// Merkle root of each transaction's full encoding (signatures included), in block order:
    /// the txid leaves signatures out, so without this root a relay or a Byzantine proposer
    /// could swap them inside a certified block (BIP-141's witness commitment).
    pub witness_root: Hash32,
    /// Commitment to the UTXO set after this block.
    pub utxo_commitment: Hash32,
    /// Hash of the masternode set that must sign the next block.
    pub next_masternode_set_hash: Hash32,
    /// Hash of the previous block's commit certificate carried in this block (zero if none).
    pub last_commit_hash: Hash32,
    /// Merkle root of the ids of the evidence the block carries (zero if none).
    pub evidence_root: Hash32,
}

crate::canonical!(BlockHeader, "block header", 1024);

impl BlockHeader {
    pub fn hash(&self) -> BlockHash {
        let mut h = Hash32::hasher(tag::BLOCK);
        codec::encode_into(self, &mut h);
        Hash32::from_hasher(&h)
    }
}

/// Decoded by hand (see [`decode_shared_transactions`]); encoded as derived, field by field,
/// with each `Arc<Transaction>` encoded as the transaction.
#[derive(Clone, Debug, PartialEq, Eq, Encode)]
pub struct Block {
    pub header: BlockHeader,
    /// The certificate that committed the previous block, as the proposer collected it. Its
    /// signers are the ones this block's coinbase pays: participation proven on-chain.
    pub last_commit: Option<CommitCertificate>,
    /// The coinbase first, then transfers and registrations, each spending only outputs that
    /// exist before it. Shared: the bodies finalized here, a proposal built or filled in from
    /// them, and the committed block are one allocation each.
    pub transactions: Vec<Arc<Transaction>>,
    /// Equivocation evidence not yet on the chain, at most `MAX_BLOCK_EVIDENCE`, one per
    /// offender; each offender leaves the masternode set after this block.
    pub evidence: Vec<Evidence>,
}

crate::canonical!(Block, "block", MAX_BLOCK_BYTES);

impl<C> Decode<C> for Block {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(Block {
            header: Decode::decode(decoder)?,
            last_commit: Decode::decode(decoder)?,
            transactions: decode_shared_transactions(decoder)?,
            evidence: Decode::decode(decoder)?,
        })
    }
}

bincode::impl_borrow_decode!(Block);

/// What one shared transaction takes before its own vectors: the transaction and the `Arc`'s
/// two counters.
const SHARED_TX_BYTES: usize =
    std::mem::size_of::<Transaction>() + 2 * std::mem::size_of::<usize>();

/// A block's transaction list, each transaction shared, claiming [`SHARED_TX_BYTES`] per entry
/// against the decoder's limit before anything is allocated, as bincode does for the elements
/// of any `Vec`. Derived, a `Vec<Arc<Transaction>>` would claim a pointer's 8 bytes an entry,
/// and a hostile frame of a million four-byte transactions would allocate ten times the
/// block limit before any rule saw it.
fn decode_shared_transactions<C, D: bincode::de::Decoder<Context = C>>(
    decoder: &mut D,
) -> Result<Vec<Arc<Transaction>>, bincode::error::DecodeError> {
    use bincode::error::DecodeError;
    let len: u64 = Decode::decode(decoder)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::OutsideUsizeRange(len))?;
    let claim = len
        .checked_mul(SHARED_TX_BYTES)
        .ok_or(DecodeError::LimitExceeded)?;
    decoder.claim_bytes_read(claim)?;
    let mut transactions = Vec::with_capacity(len);
    for _ in 0..len {
        // Each transaction's own vectors claim their bytes as they decode (bincode's `Vec`).
        decoder.unclaim_bytes_read(SHARED_TX_BYTES);
        transactions.push(Arc::new(Transaction::decode(decoder)?));
    }
    Ok(transactions)
}

/// The leaf a transaction contributes to the witness root: a tagged hash of its canonical
/// encoding, signatures and every other field included.
pub fn witness_hash(tx: &Transaction) -> Hash32 {
    let mut h = Hash32::hasher(tag::WITNESS);
    codec::encode_into(tx, &mut h);
    Hash32::from_hasher(&h)
}

/// The witness root of transactions in block order.
pub fn witness_root(transactions: &[Arc<Transaction>]) -> Hash32 {
    let leaves: Vec<Hash32> = transactions.iter().map(|tx| witness_hash(tx)).collect();
    merkle_root(&leaves)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlockError {
    #[error("block {height}: {size} bytes is larger than the limit of {max}")]
    TooLarge {
        height: u64,
        size: usize,
        max: usize,
    },
    #[error("block {height}: unsupported version {version}")]
    BadVersion { height: u64, version: u32 },
    #[error("block {height}: first transaction must be a coinbase for this height")]
    MissingCoinbase { height: u64 },
    #[error("block {height}: transaction {index} is invalid: {source}")]
    BadTransaction {
        height: u64,
        index: usize,
        #[source]
        source: TxError,
    },
    #[error("block {height}: transaction {txid} appears twice")]
    DuplicateTransaction { height: u64, txid: Txid },
    #[error("block {height}: merkle root does not match its transactions")]
    BadTxRoot { height: u64 },
    #[error("block {height}: last commit does not match the header's last_commit_hash")]
    BadLastCommit { height: u64 },
    #[error("block {height}: witness root does not match its transactions' full encodings")]
    BadWitnessRoot { height: u64 },
    #[error("block {height}: evidence root does not match its evidence")]
    BadEvidenceRoot { height: u64 },
    #[error("block {height}: {count} pieces of evidence, more than the limit of {max}")]
    TooMuchEvidence {
        height: u64,
        count: usize,
        max: usize,
    },
    #[error("block {height}: evidence {index} is malformed: {source}")]
    BadEvidence {
        height: u64,
        index: usize,
        #[source]
        source: EvidenceError,
    },
    #[error("block {height}: two pieces of evidence against {offender}")]
    DuplicateOffender {
        height: u64,
        offender: super::keys::PublicKey,
    },
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    pub fn height(&self) -> u64 {
        self.header.height
    }

    pub fn txids(&self) -> Vec<Txid> {
        self.transactions.iter().map(|tx| tx.txid()).collect()
    }

    /// Rules that need no ledger: size, version, coinbase placement, per-transaction structure,
    /// unique txids, the merkle and witness roots, and the evidence's shape (its signatures
    /// and membership need the masternode set: consensus checks them).
    pub fn check_structure(&self) -> Result<(), BlockError> {
        let height = self.header.height;
        let size = codec::encoded_len(self);
        if size > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                height,
                size,
                max: MAX_BLOCK_BYTES,
            });
        }
        if self.header.version != BLOCK_VERSION {
            return Err(BlockError::BadVersion {
                height,
                version: self.header.version,
            });
        }
        match self.transactions.first().map(|t| &t.payload) {
            Some(super::transaction::TxPayload::Coinbase { height: h }) if *h == height => {}
            _ => return Err(BlockError::MissingCoinbase { height }),
        }
        let mut seen = HashSet::with_capacity(self.transactions.len());
        let mut txids = Vec::with_capacity(self.transactions.len());
        for (index, tx) in self.transactions.iter().enumerate() {
            tx.check_structure(index == 0)
                .map_err(|source| BlockError::BadTransaction {
                    height,
                    index,
                    source,
                })?;
            let txid = tx.txid();
            if !seen.insert(txid) {
                return Err(BlockError::DuplicateTransaction { height, txid });
            }
            txids.push(txid);
        }
        if merkle_root(&txids) != self.header.tx_root {
            return Err(BlockError::BadTxRoot { height });
        }
        if witness_root(&self.transactions) != self.header.witness_root {
            return Err(BlockError::BadWitnessRoot { height });
        }
        self.check_evidence_shape()?;
        let last_commit_hash = self
            .last_commit
            .as_ref()
            .map_or(Hash32::ZERO, CommitCertificate::hash);
        if last_commit_hash != self.header.last_commit_hash {
            return Err(BlockError::BadLastCommit { height });
        }
        Ok(())
    }

    /// The evidence list: bounded, one piece per offender, each a real conflict, and the
    /// header's root over it.
    fn check_evidence_shape(&self) -> Result<(), BlockError> {
        let height = self.header.height;
        if self.evidence.len() > MAX_BLOCK_EVIDENCE {
            return Err(BlockError::TooMuchEvidence {
                height,
                count: self.evidence.len(),
                max: MAX_BLOCK_EVIDENCE,
            });
        }
        let mut offenders = HashSet::with_capacity(self.evidence.len());
        for (index, ev) in self.evidence.iter().enumerate() {
            ev.check_conflict()
                .map_err(|source| BlockError::BadEvidence {
                    height,
                    index,
                    source,
                })?;
            if !offenders.insert(ev.offender()) {
                return Err(BlockError::DuplicateOffender {
                    height,
                    offender: ev.offender(),
                });
            }
        }
        if evidence_root(&self.evidence) != self.header.evidence_root {
            return Err(BlockError::BadEvidenceRoot { height });
        }
        Ok(())
    }

    /// Sets the header's roots over the transactions and evidence as they now are.
    pub fn seal_roots(&mut self) {
        let txids: Vec<Txid> = self.txids();
        self.header.tx_root = merkle_root(&txids);
        self.header.witness_root = witness_root(&self.transactions);
        self.header.evidence_root = evidence_root(&self.evidence);
    }
}

/// The proof that a block is final: precommits for it by more than two thirds of the weight of
/// the masternode set at its height. Checking the weights needs that set, so it is done by
/// consensus; this type only carries the votes.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CommitCertificate {
    pub height: u64,
    pub round: u32,
    pub block_hash: BlockHash,
    /// Precommits for `block_hash` at `height`/`round`, one per validator.
    pub precommits: Vec<ConsensusVote>,
}

crate::canonical!(CommitCertificate, "commit certificate", MAX_VOTE_BYTES);

impl CommitCertificate {
    pub fn hash(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::COMMIT);
        codec::encode_into(self, &mut h);
        Hash32::from_hasher(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::transaction::TxPayload;

    fn block_of(transactions: Vec<Arc<Transaction>>) -> Block {
        let header = BlockHeader {
            version: BLOCK_VERSION,
            height: 1,
            prev_hash: Hash32::ZERO,
            timestamp_ms: 0,
            round: 0,
            proposer: PublicKey([0; 32]),
            tx_root: Hash32::ZERO,
            witness_root: Hash32::ZERO,
            utxo_commitment: Hash32::ZERO,
            next_masternode_set_hash: Hash32::ZERO,
            last_commit_hash: Hash32::ZERO,
            evidence_root: Hash32::ZERO,
        };
        Block {
            header,
            last_commit: None,
            transactions,
            evidence: Vec::new(),
        }
    }

    #[test]
    fn shared_transactions_decode_as_plain_ones_and_a_flood_of_tiny_ones_is_refused() {
        use crate::types::Canonical;
        let tiny = Arc::new(Transaction::new(
            1,
            Vec::new(),
            Vec::new(),
            TxPayload::Transfer,
        ));
        let few = block_of(vec![Arc::clone(&tiny); 3]);
        assert_eq!(Block::from_bytes(&few.to_bytes()).unwrap(), few);
        // Four bytes each on the wire, ≈ 120 in memory: within the byte limit as bytes, over it
        // as memory, refused before the list is allocated.
        let many = MAX_BLOCK_BYTES / SHARED_TX_BYTES + 1;
        let flood = block_of(vec![tiny; many]).to_bytes();
        assert!(flood.len() < MAX_BLOCK_BYTES);
        let err = Block::from_bytes(&flood).unwrap_err();
        assert!(err.to_string().contains("LimitExceeded"), "{err}");
    }
}
