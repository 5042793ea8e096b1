//! What travels in a frame: one message kind per frame type byte, each body in the canonical
//! encoding with its own size limit.

use super::frame::Frame;
use super::handshake::{Hello, Proof};
use super::tx_relay::MAX_TXIDS_PER_FRAME;
use crate::consensus::driver::WireMessage;
use crate::consensus::snapshot::{HeaderEntry, SnapshotPage, MAX_HEADERS, SNAPSHOT_PAGE};
use crate::types::codec::{self, CodecError, MAX_BLOCK_BYTES};
use crate::types::slot::{
    BatchAnnouncement, LockReport, SlotCertificate, SlotFinalityProof, SlotShare,
};
use crate::types::{
    Block, Canonical, CommitCertificate, CompactProposal, ConsensusVote, Evidence, Hash32,
    Proposal, Transaction, Txid, VoteBatch,
};
use bincode::{Decode, Encode};
use std::sync::Arc;

/// Most addresses one `Addr` message may carry.
pub const MAX_ADDRS: usize = 1_000;

use crate::types::frame_kind as kind;
pub use crate::types::frame_kind::name as kind_name;

/// Whether frames of this type may carry a body large enough to be compressed. Pings,
/// requests and single votes are always far below `COMPRESS_ABOVE`: a compressed one is a
/// protocol violation refused before any decompression, so a flood of them costs no
/// decompression work.
pub fn may_be_large(k: u8) -> bool {
    !matches!(
        k,
        kind::PING
            | kind::PONG
            | kind::VOTE
            | kind::GET_FINALITY
            | kind::GET_BLOCKS
            | kind::GET_HEADERS
            | kind::GET_SNAPSHOT
            | kind::SLOT_SHARE
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetMessage {
    Hello(Hello),
    /// The handshake's second message: proof of the node key for this connection.
    Proof(Proof),
    Ping(u64),
    Pong(u64),
    /// Peer addresses (`host:port`) for discovery.
    Addr(Vec<String>),
    Consensus(WireMessage),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("unknown message type {0}")]
    UnknownKind(u8),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("more than {max} {what} in one message")]
    TooMany { what: &'static str, max: usize },
}

#[derive(Encode, Decode)]
struct FinalityBody {
    tx: Transaction,
    batches: Vec<VoteBatch>,
}

#[derive(Encode, Decode)]
struct SlotFinalityBody {
    tx: Transaction,
    proof: SlotFinalityProof,
}

#[derive(Encode, Decode)]
struct GetSlotBatchBody {
    slot: u64,
    root: Hash32,
}

#[derive(Encode, Decode)]
struct GetProposalBody {
    height: u64,
    round: u32,
}

#[derive(Encode, Decode)]
struct BlocksBody(Vec<(Block, CommitCertificate)>);

#[derive(Encode, Decode)]
struct GetSnapshotBody {
    height: u64,
    page: u32,
}

fn decode<T: Decode<()> + Encode, const MAX: usize>(
    what: &'static str,
    body: &[u8],
) -> Result<T, MessageError> {
    Ok(codec::decode::<T, MAX>(what, body)?)
}

const MAX_FRAME: usize = super::frame::MAX_FRAME_BYTES;

/// A list of txids, at most `MAX_TXIDS_PER_FRAME` (an announcement or a request for bodies).
fn txids(what: &'static str, body: &[u8]) -> Result<Vec<Txid>, MessageError> {
    let list: Vec<Txid> = decode::<Vec<Txid>, { 32 * MAX_TXIDS_PER_FRAME + 16 }>(what, body)?;
    if list.len() > MAX_TXIDS_PER_FRAME {
        return Err(MessageError::TooMany {
            what: "txids",
            max: MAX_TXIDS_PER_FRAME,
        });
    }
    Ok(list)
}

impl NetMessage {
    /// Whether the message belongs to consensus (votes, proposals, blocks), which is sent
    /// ahead of transactions and addresses when a peer's queue is busy.
    pub fn is_priority(&self) -> bool {
        match self {
            // Bulk data that can wait behind votes: transactions and snapshot pages.
            NetMessage::Consensus(w) => !matches!(
                w,
                WireMessage::Transaction(_)
                    | WireMessage::TxInv(_)
                    | WireMessage::GetTxs(_)
                    | WireMessage::Snapshot(_)
            ),
            NetMessage::Hello(_)
            | NetMessage::Proof(_)
            | NetMessage::Ping(_)
            | NetMessage::Pong(_) => true,
            NetMessage::Addr(_) => false,
        }
    }

    pub fn to_frame(&self) -> Frame {
        let (kind, body) = match self {
            NetMessage::Hello(h) => (kind::HELLO, h.to_bytes()),
            NetMessage::Proof(p) => (kind::PROOF, p.to_bytes()),
            NetMessage::Ping(n) => (kind::PING, codec::encode(n)),
            NetMessage::Pong(n) => (kind::PONG, codec::encode(n)),
            NetMessage::Addr(a) => (kind::ADDR, codec::encode(a)),
            NetMessage::Consensus(w) => match w {
                WireMessage::Transaction(tx) => (kind::TRANSACTION, tx.to_bytes()),
                WireMessage::TxInv(txids) => (kind::TX_INV, codec::encode(&**txids)),
                WireMessage::GetTxs(txids) => (kind::GET_TXS, codec::encode(&**txids)),
                WireMessage::VoteBatch(b) => (kind::VOTE_BATCH, b.to_bytes()),
                WireMessage::Proposal(p) => (kind::PROPOSAL, p.to_bytes()),
                WireMessage::CompactProposal(p) => (kind::COMPACT_PROPOSAL, p.to_bytes()),
                WireMessage::GetProposal { height, round } => (
                    kind::GET_PROPOSAL,
                    codec::encode(&GetProposalBody {
                        height: *height,
                        round: *round,
                    }),
                ),
                WireMessage::Vote(v) => (kind::VOTE, v.to_bytes()),
                WireMessage::GetFinality(t) => (kind::GET_FINALITY, codec::encode(t)),
                WireMessage::Finality { tx, batches } => (
                    kind::FINALITY,
                    codec::encode(&FinalityBody {
                        tx: (**tx).clone(),
                        batches: batches.iter().map(|b| (**b).clone()).collect(),
                    }),
                ),
                WireMessage::GetBlocks { from_height } => {
                    (kind::GET_BLOCKS, codec::encode(from_height))
                }
                WireMessage::GetHeaders { from_height } => {
                    (kind::GET_HEADERS, codec::encode(from_height))
                }
                WireMessage::Headers(h) => (kind::HEADERS, codec::encode(&**h)),
                WireMessage::GetSnapshot { height, page } => (
                    kind::GET_SNAPSHOT,
                    codec::encode(&GetSnapshotBody {
                        height: *height,
                        page: *page,
                    }),
                ),
                WireMessage::Snapshot(p) => (kind::SNAPSHOT, codec::encode(&**p)),
                WireMessage::Evidence(e) => (kind::EVIDENCE, e.to_bytes()),
                WireMessage::SlotAnnouncement(a) => (kind::SLOT_ANNOUNCEMENT, a.to_bytes()),
                WireMessage::SlotShare(s) => (kind::SLOT_SHARE, s.to_bytes()),
                WireMessage::LockReport(r) => (kind::LOCK_REPORT, r.to_bytes()),
                WireMessage::SlotFinality { tx, proof } => (
                    kind::SLOT_FINALITY,
                    codec::encode(&SlotFinalityBody {
                        tx: (**tx).clone(),
                        proof: (**proof).clone(),
                    }),
                ),
                WireMessage::SlotCertificate(c) => (kind::SLOT_CERTIFICATE, c.to_bytes()),
                WireMessage::GetSlotBatch { slot, root } => (
                    kind::GET_SLOT_BATCH,
                    codec::encode(&GetSlotBatchBody {
                        slot: *slot,
                        root: *root,
                    }),
                ),
                WireMessage::Blocks(blocks) => (
                    kind::BLOCKS,
                    codec::encode(&BlocksBody(
                        blocks
                            .iter()
                            .map(|(b, c)| ((**b).clone(), c.clone()))
                            .collect(),
                    )),
                ),
            },
        };
        Frame { kind, body }
    }

    pub fn from_frame(frame: &Frame) -> Result<NetMessage, MessageError> {
        let b = &frame.body[..];
        let consensus = |w| Ok(NetMessage::Consensus(w));
        match frame.kind {
            kind::HELLO => Ok(NetMessage::Hello(Hello::from_bytes(b)?)),
            kind::PROOF => Ok(NetMessage::Proof(Proof::from_bytes(b)?)),
            kind::PING => Ok(NetMessage::Ping(decode::<u64, 16>("ping", b)?)),
            kind::PONG => Ok(NetMessage::Pong(decode::<u64, 16>("pong", b)?)),
            kind::ADDR => {
                let addrs: Vec<String> = decode::<Vec<String>, { 300 * MAX_ADDRS }>("addr", b)?;
                Ok(NetMessage::Addr(
                    addrs.into_iter().take(MAX_ADDRS).collect(),
                ))
            }
            kind::TRANSACTION => consensus(WireMessage::Transaction(Arc::new(
                Transaction::from_bytes(b)?,
            ))),
            kind::TX_INV => consensus(WireMessage::TxInv(Arc::new(txids("tx inv", b)?))),
            kind::GET_TXS => consensus(WireMessage::GetTxs(Arc::new(txids("get txs", b)?))),
            kind::VOTE_BATCH => {
                consensus(WireMessage::VoteBatch(Arc::new(VoteBatch::from_bytes(b)?)))
            }
            kind::PROPOSAL => consensus(WireMessage::Proposal(Arc::new(Proposal::from_bytes(b)?))),
            kind::COMPACT_PROPOSAL => consensus(WireMessage::CompactProposal(Arc::new(
                CompactProposal::from_bytes(b)?,
            ))),
            kind::GET_PROPOSAL => {
                let g: GetProposalBody = decode::<GetProposalBody, 32>("get proposal", b)?;
                consensus(WireMessage::GetProposal {
                    height: g.height,
                    round: g.round,
                })
            }
            kind::VOTE => consensus(WireMessage::Vote(ConsensusVote::from_bytes(b)?)),
            kind::GET_FINALITY => consensus(WireMessage::GetFinality(decode::<Txid, 64>(
                "get finality",
                b,
            )?)),
            kind::FINALITY => {
                let f: FinalityBody = decode::<FinalityBody, MAX_BLOCK_BYTES>("finality", b)?;
                consensus(WireMessage::Finality {
                    tx: Arc::new(f.tx),
                    batches: f.batches.into_iter().map(Arc::new).collect(),
                })
            }
            kind::GET_BLOCKS => consensus(WireMessage::GetBlocks {
                from_height: decode::<u64, 16>("get blocks", b)?,
            }),
            kind::BLOCKS => {
                let BlocksBody(list) = decode::<BlocksBody, MAX_FRAME>("blocks", b)?;
                consensus(WireMessage::Blocks(
                    list.into_iter().map(|(b, c)| (Arc::new(b), c)).collect(),
                ))
            }
            kind::GET_HEADERS => consensus(WireMessage::GetHeaders {
                from_height: decode::<u64, 16>("get headers", b)?,
            }),
            kind::HEADERS => {
                let list: Vec<HeaderEntry> = decode::<Vec<HeaderEntry>, MAX_FRAME>("headers", b)?;
                if list.len() > MAX_HEADERS {
                    return Err(MessageError::TooMany {
                        what: "headers",
                        max: MAX_HEADERS,
                    });
                }
                consensus(WireMessage::Headers(Arc::new(list)))
            }
            kind::GET_SNAPSHOT => {
                let g: GetSnapshotBody = decode::<GetSnapshotBody, 32>("get snapshot", b)?;
                consensus(WireMessage::GetSnapshot {
                    height: g.height,
                    page: g.page,
                })
            }
            kind::SNAPSHOT => {
                let p: SnapshotPage = decode::<SnapshotPage, MAX_FRAME>("snapshot", b)?;
                if p.entries.len() > SNAPSHOT_PAGE {
                    return Err(MessageError::TooMany {
                        what: "snapshot entries",
                        max: SNAPSHOT_PAGE,
                    });
                }
                consensus(WireMessage::Snapshot(Arc::new(p)))
            }
            kind::EVIDENCE => consensus(WireMessage::Evidence(Arc::new(Evidence::from_bytes(b)?))),
            kind::SLOT_ANNOUNCEMENT => consensus(WireMessage::SlotAnnouncement(Arc::new(
                BatchAnnouncement::from_bytes(b)?,
            ))),
            kind::SLOT_SHARE => consensus(WireMessage::SlotShare(SlotShare::from_bytes(b)?)),
            kind::LOCK_REPORT => consensus(WireMessage::LockReport(Arc::new(
                LockReport::from_bytes(b)?,
            ))),
            kind::SLOT_FINALITY => {
                let f: SlotFinalityBody =
                    decode::<SlotFinalityBody, { 160 * 1024 }>("slot finality", b)?;
                consensus(WireMessage::SlotFinality {
                    tx: Arc::new(f.tx),
                    proof: Arc::new(f.proof),
                })
            }
            kind::SLOT_CERTIFICATE => consensus(WireMessage::SlotCertificate(Arc::new(
                SlotCertificate::from_bytes(b)?,
            ))),
            kind::GET_SLOT_BATCH => {
                let g: GetSlotBatchBody = decode::<GetSlotBatchBody, 64>("get slot batch", b)?;
                consensus(WireMessage::GetSlotBatch {
                    slot: g.slot,
                    root: g.root,
                })
            }
            other => Err(MessageError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Hash32, Network, SecretKey, VoteKind};

    #[test]
    fn consensus_messages_round_trip_through_frames() {
        let key = SecretKey::from_bytes(&[3; 32]);
        let msgs = vec![
            NetMessage::Ping(7),
            NetMessage::Addr(vec!["127.0.0.1:1".into()]),
            NetMessage::Consensus(WireMessage::Vote(ConsensusVote::sign(
                &key,
                Network::Localnet,
                VoteKind::Prevote,
                1,
                0,
                None,
            ))),
            NetMessage::Consensus(WireMessage::VoteBatch(Arc::new(VoteBatch::sign(
                &key,
                Network::Localnet,
                (0, Hash32([4; 32])),
                1,
                vec![Hash32([1; 32])],
            )))),
            NetMessage::Consensus(WireMessage::GetBlocks { from_height: 9 }),
            NetMessage::Consensus(WireMessage::GetFinality(Hash32([2; 32]))),
            NetMessage::Consensus(WireMessage::GetSlotBatch {
                slot: 17,
                root: Hash32([5; 32]),
            }),
            NetMessage::Consensus(WireMessage::Blocks(Vec::new())),
            NetMessage::Consensus(WireMessage::TxInv(Arc::new(vec![Hash32([6; 32]); 3]))),
            NetMessage::Consensus(WireMessage::GetTxs(Arc::new(vec![Hash32([7; 32])]))),
        ];
        for m in msgs {
            assert_eq!(NetMessage::from_frame(&m.to_frame()), Ok(m));
        }
    }

    #[test]
    fn unknown_types_and_bad_bodies_are_errors() {
        let f = Frame {
            kind: 200,
            body: Vec::new(),
        };
        assert_eq!(
            NetMessage::from_frame(&f),
            Err(MessageError::UnknownKind(200))
        );
        let f = Frame {
            kind: kind::VOTE,
            body: vec![1, 2, 3],
        };
        assert!(matches!(
            NetMessage::from_frame(&f),
            Err(MessageError::Codec(_))
        ));
    }

    #[test]
    fn an_announcement_over_the_txid_limit_is_refused() {
        let over = vec![Hash32([1; 32]); MAX_TXIDS_PER_FRAME + 1];
        for k in [kind::TX_INV, kind::GET_TXS] {
            let f = Frame {
                kind: k,
                body: codec::encode(&over),
            };
            assert!(NetMessage::from_frame(&f).is_err(), "kind {k}");
        }
    }
}
