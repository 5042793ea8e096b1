//! Signed votes of both consensus layers.
//!
//! * Layer 1: a [`VoteBatch`] names many txids under one signature, which is what makes
//!   instant finality cheap.
//! * Layer 2: a [`ConsensusVote`] is a Tendermint prevote or precommit for one block (or nil).
//!
//! Each signs `network id || hash(domain tag, body)`, so a vote of one kind or network can never
//! be replayed as another.

use super::codec::{self, MAX_VOTE_BYTES};
use super::hash::{tag, Hash32};
use super::keys::{PublicKey, SecretKey, Signature};
use super::network::Network;
use super::transaction::Txid;
use bincode::{Decode, Encode};

/// Most txids one vote batch may carry.
pub const MAX_BATCH_TXIDS: usize = 4096;

fn signing_message(network: Network, body: &Hash32) -> [u8; 36] {
    let mut m = [0u8; 36];
    m[..4].copy_from_slice(&network.id());
    m[4..].copy_from_slice(&body.0);
    m
}

/// A masternode's signed statement "I locked the inputs of these transactions to them".
///
/// It names the masternode set it is cast under by that set's hash: a tally counts the vote
/// only under that set (or as a vote of a member of the set before it, see
/// `consensus::finality`), so no node can recount it under another set it happens to hold.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct VoteBatch {
    pub voter: PublicKey,
    /// Height of the masternode set the votes are cast under (informational: `set_hash`
    /// is what binds the vote).
    pub set_height: u64,
    /// `MasternodeSet::hash` of the set the votes are cast under.
    pub set_hash: Hash32,
    /// Per-voter sequence number; with `voter` it names the batch uniquely.
    pub sequence: u64,
    pub txids: Vec<Txid>,
    pub signature: Signature,
}

crate::canonical!(VoteBatch, "vote batch", MAX_VOTE_BYTES);

impl VoteBatch {
    /// Hash of everything but the signature: the batch's id and what is signed.
    pub fn id(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::VOTE_BATCH);
        codec::encode_into(&self.voter, &mut h);
        codec::encode_into(&self.set_height, &mut h);
        codec::encode_into(&self.set_hash, &mut h);
        codec::encode_into(&self.sequence, &mut h);
        codec::encode_into(&self.txids, &mut h);
        Hash32::from_hasher(&h)
    }

    pub fn signing_message(&self, network: Network) -> [u8; 36] {
        signing_message(network, &self.id())
    }

    /// Builds and signs a batch cast under the set of height `set_height` and hash `set_hash`.
    pub fn sign(
        key: &SecretKey,
        network: Network,
        (set_height, set_hash): (u64, Hash32),
        sequence: u64,
        txids: Vec<Txid>,
    ) -> VoteBatch {
        let mut batch = VoteBatch {
            voter: key.public_key(),
            set_height,
            set_hash,
            sequence,
            txids,
            signature: Signature([0; 64]),
        };
        batch.signature = key.sign(&batch.signing_message(network));
        batch
    }

    pub fn verify(&self, network: Network) -> bool {
        super::signature::verify(&self.voter, &self.signing_message(network), &self.signature)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum VoteKind {
    Prevote,
    Precommit,
}

/// A Tendermint prevote or precommit. `block_hash: None` is a vote for nil.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ConsensusVote {
    pub kind: VoteKind,
    pub height: u64,
    pub round: u32,
    pub block_hash: Option<Hash32>,
    pub validator: PublicKey,
    pub signature: Signature,
}

crate::canonical!(ConsensusVote, "consensus vote", 1024);

impl ConsensusVote {
    pub fn body_hash(&self) -> Hash32 {
        let mut h = Hash32::hasher(tag::CONSENSUS_VOTE);
        codec::encode_into(&self.kind, &mut h);
        codec::encode_into(&self.height, &mut h);
        codec::encode_into(&self.round, &mut h);
        codec::encode_into(&self.block_hash, &mut h);
        codec::encode_into(&self.validator, &mut h);
        Hash32::from_hasher(&h)
    }

    pub fn signing_message(&self, network: Network) -> [u8; 36] {
        signing_message(network, &self.body_hash())
    }

    pub fn sign(
        key: &SecretKey,
        network: Network,
        kind: VoteKind,
        height: u64,
        round: u32,
        block_hash: Option<Hash32>,
    ) -> ConsensusVote {
        let mut vote = ConsensusVote {
            kind,
            height,
            round,
            block_hash,
            validator: key.public_key(),
            signature: Signature([0; 64]),
        };
        vote.signature = key.sign(&vote.signing_message(network));
        vote
    }

    pub fn verify(&self, network: Network) -> bool {
        super::signature::verify(
            &self.validator,
            &self.signing_message(network),
            &self.signature,
        )
    }
}

/// A Tendermint proposal: a block for `height` at `round`, re-proposing a value that had a
/// polka at `valid_round` if there is one (paper, Algorithm 1, line 19).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    pub height: u64,
    pub round: u32,
    pub valid_round: Option<u32>,
    /// Shared, not copied, from the wire to the engine, the ledger's checks and the commit:
    /// the ledger knows a block it checked by this allocation (`Ledger::check_well_formed`).
    pub block: std::sync::Arc<super::block::Block>,
    pub proposer: PublicKey,
    pub signature: Signature,
}

crate::canonical!(
    Proposal,
    "proposal",
    super::codec::MAX_BLOCK_BYTES + 64 * 1024
);

/// What a proposer signs: the block only by its hash, so the same signature holds over a
/// [`CompactProposal`] that carries the block's transactions by txid.
fn proposal_hash(
    (height, round, valid_round): (u64, u32, Option<u32>),
    block_hash: &Hash32,
    proposer: &PublicKey,
) -> Hash32 {
    let mut h = Hash32::hasher(tag::PROPOSAL);
    codec::encode_into(&height, &mut h);
    codec::encode_into(&round, &mut h);
    codec::encode_into(&valid_round, &mut h);
    codec::encode_into(block_hash, &mut h);
    codec::encode_into(proposer, &mut h);
    Hash32::from_hasher(&h)
}

impl Proposal {
    pub fn body_hash(&self) -> Hash32 {
        proposal_hash(
            (self.height, self.round, self.valid_round),
            &self.block.hash(),
            &self.proposer,
        )
    }

    pub fn sign(
        key: &SecretKey,
        network: Network,
        height: u64,
        round: u32,
        valid_round: Option<u32>,
        block: impl Into<std::sync::Arc<super::block::Block>>,
    ) -> Proposal {
        let mut p = Proposal {
            height,
            round,
            valid_round,
            block: block.into(),
            proposer: key.public_key(),
            signature: Signature([0; 64]),
        };
        p.signature = key.sign(&signing_message(network, &p.body_hash()));
        p
    }

    pub fn verify(&self, network: Network) -> bool {
        super::signature::verify(
            &self.proposer,
            &signing_message(network, &self.body_hash()),
            &self.signature,
        )
    }
}

/// A proposal as it crosses the network: the block whole but for its transfers, which go by
/// txid. Every validator must hold each transfer final before it may vote for the block, so
/// it has the bodies already; sending them again made a block at 1,000 masternodes cost its
/// proposer a thousand full copies (SCALING.md). The proposer's signature is the full
/// proposal's: it covers the header, which commits to the txids and to every body.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CompactProposal {
    pub height: u64,
    pub round: u32,
    pub valid_round: Option<u32>,
    pub header: super::block::BlockHeader,
    pub last_commit: Option<super::block::CommitCertificate>,
    /// The block's first transaction, which no validator holds before the block.
    pub coinbase: std::sync::Arc<super::transaction::Transaction>,
    /// Every other transaction of the block, in block order.
    pub txids: Vec<Txid>,
    pub evidence: Vec<super::evidence::Evidence>,
    pub proposer: PublicKey,
    pub signature: Signature,
}

crate::canonical!(
    CompactProposal,
    "compact proposal",
    super::codec::MAX_BLOCK_BYTES + 64 * 1024
);

impl CompactProposal {
    /// The compact form of `p`; `None` for a block without a first transaction (malformed;
    /// such a proposal is never sent).
    pub fn of(p: &Proposal) -> Option<CompactProposal> {
        let (coinbase, transfers) = p.block.transactions.split_first()?;
        Some(CompactProposal {
            height: p.height,
            round: p.round,
            valid_round: p.valid_round,
            header: p.block.header.clone(),
            last_commit: p.block.last_commit.clone(),
            coinbase: coinbase.clone(),
            txids: transfers.iter().map(|t| t.txid()).collect(),
            evidence: p.block.evidence.clone(),
            proposer: p.proposer,
            signature: p.signature,
        })
    }

    pub fn body_hash(&self) -> Hash32 {
        proposal_hash(
            (self.height, self.round, self.valid_round),
            &self.header.hash(),
            &self.proposer,
        )
    }

    pub fn verify(&self, network: Network) -> bool {
        super::signature::verify(
            &self.proposer,
            &signing_message(network, &self.body_hash()),
            &self.signature,
        )
    }

    /// Whether what it carries besides the transfers' bodies is what the signed header
    /// commits to: the txids (with the coinbase's), the evidence and the carried certificate.
    /// Checked before anything is asked for or remembered, so a relay that altered a list
    /// is caught at once, and two copies that pass are the same proposal.
    pub fn binds_to_header(&self) -> bool {
        let mut txids = Vec::with_capacity(self.txids.len() + 1);
        txids.push(self.coinbase.txid());
        txids.extend_from_slice(&self.txids);
        let last_commit_hash = self
            .last_commit
            .as_ref()
            .map_or(Hash32::ZERO, super::block::CommitCertificate::hash);
        super::hash::merkle_root(&txids) == self.header.tx_root
            && super::evidence::evidence_root(&self.evidence) == self.header.evidence_root
            && last_commit_hash == self.header.last_commit_hash
            && self.header.height == self.height
    }

    /// The full proposal, given the bodies of `txids` in their order. Whether they are the
    /// bodies the header commits to is for `Block::check_structure` to say.
    pub fn fill(
        &self,
        transfers: Vec<std::sync::Arc<super::transaction::Transaction>>,
    ) -> Proposal {
        let mut transactions = Vec::with_capacity(transfers.len() + 1);
        transactions.push(self.coinbase.clone());
        transactions.extend(transfers);
        Proposal {
            height: self.height,
            round: self.round,
            valid_round: self.valid_round,
            block: std::sync::Arc::new(super::block::Block {
                header: self.header.clone(),
                last_commit: self.last_commit.clone(),
                transactions,
                evidence: self.evidence.clone(),
            }),
            proposer: self.proposer,
            signature: self.signature,
        }
    }
}
