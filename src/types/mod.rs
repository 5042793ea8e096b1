//! Protocol data types and their one canonical encoding. Pure: no I/O, no clock, no tokio.

pub mod address;
pub mod amount;
pub mod block;
pub mod bls;
pub mod codec;
pub mod evidence;
pub mod frame_kind;
pub mod hash;
pub mod keys;
pub mod masternode;
pub mod network;
pub mod signature;
pub mod slot;
pub mod transaction;
pub mod transfer;
pub mod utxo;
pub mod utxo_commitment;
pub mod vote;

pub use address::{Address, AddressError};
pub use amount::{Amount, AmountError, ATOMS_PER_TIME};
pub use block::{Block, BlockError, BlockHash, BlockHeader, CommitCertificate};
pub use bls::{BlsPublicKey, BlsSecretKey, BlsSignature};
pub use codec::{Canonical, CodecError};
pub use evidence::{Evidence, EvidenceError, EvidenceLayer};
pub use hash::Hash32;
pub use keys::{KeyHash, PublicKey, SecretKey, Signature};
pub use masternode::{MasternodeRegistration, Tier};
pub use network::Network;
pub use transaction::{OutPoint, Transaction, TxError, TxInput, TxOutput, TxPayload, Txid};
pub use utxo::{TxLocation, UtxoEntry, UtxoState};
pub use utxo_commitment::UtxoCommitment;
pub use vote::{CompactProposal, ConsensusVote, Proposal, VoteBatch, VoteKind};
