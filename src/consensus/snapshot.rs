//! Fast sync for new nodes: a chain of certified headers from genesis, then the UTXO set at
//! the last one, checked against the commitment that header carries.
//!
//! ```text
//! genesis set ─► header 1 + cert (verified by the set that signs 1) ─► header 2 + cert ─► …
//!                     └ next set (sent when its hash changes; checked against the header)
//! header T: utxo_commitment ◄── commitment of the snapshot's pages ──► install in the ledger
//! ```
//!
//! A new node knows only the genesis set. Each header's certificate is checked against the
//! set that signs that height; a header announces the hash of the next set, and when that
//! hash changes the server sends the new members, which must hash to it. So every step rests
//! on the one before it, back to genesis, without downloading a single block body.
//! [`HeaderChain`] is pure: it takes pages and says what it accepted.

use super::certificate::{verify_commit, CertificateError};
use super::{Masternode, MasternodeSet};
use crate::ledger::snapshot::SnapshotEntry;
use crate::ledger::UtxoCommitment;
use crate::types::{BlockHash, BlockHeader, CommitCertificate, Hash32, Network};
use bincode::{Decode, Encode};

/// The header-page contract, shared by server ([`crate::consensus::driver::header_page`]) and
/// client ([`HeaderChain::accept_page`]): a page holds at most `MAX_HEADERS` entries, and the
/// server stops adding entries once their encoded size reaches `HEADER_PAGE_BYTES`. So a page
/// below the tip is *full* when it has `MAX_HEADERS` entries or at least `HEADER_PAGE_BYTES`
/// bytes; anything shorter ends where the server's chain ends. With large masternode sets (60+
/// precommits per certificate, ~11 KB an entry) the byte bound is the one that binds.
pub const MAX_HEADERS: usize = 500;
/// See [`MAX_HEADERS`]. Half a block: a page (this plus one entry) always fits one frame.
pub const HEADER_PAGE_BYTES: usize = crate::types::codec::MAX_BLOCK_BYTES / 2;
/// Most outputs in one snapshot page.
pub const SNAPSHOT_PAGE: usize = 10_000;

/// One certified header; `next_set` is present when the header changes the set's hash.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HeaderEntry {
    pub header: BlockHeader,
    pub cert: CommitCertificate,
    pub next_set: Option<Vec<Masternode>>,
}

/// One page of the confirmed UTXO set at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SnapshotPage {
    pub height: u64,
    pub page: u32,
    pub pages: u32,
    pub entries: Vec<SnapshotEntry>,
}

/// Encoded size of one header entry, as the page contract counts it.
pub fn entry_bytes(entry: &HeaderEntry) -> usize {
    crate::types::codec::encoded_len(entry)
}

/// Whether a page is as long as the contract lets a server make it (so stopping there says
/// nothing about where the server's chain ends).
pub fn page_is_full(page: &[HeaderEntry]) -> bool {
    page.len() >= MAX_HEADERS || page.iter().map(entry_bytes).sum::<usize>() >= HEADER_PAGE_BYTES
}

/// Page `page` of a snapshot's outputs (`SNAPSHOT_PAGE` a page) taken at `height`; `None` past
/// the last page. What both the sync server and the simulation's driver serve.
pub fn snapshot_page(height: u64, entries: &[SnapshotEntry], page: u32) -> Option<SnapshotPage> {
    let pages = entries.len().div_ceil(SNAPSHOT_PAGE).max(1) as u32;
    if page >= pages {
        return None;
    }
    let start = page as usize * SNAPSHOT_PAGE;
    let slice = entries[start..(start + SNAPSHOT_PAGE).min(entries.len())].to_vec();
    Some(SnapshotPage {
        height,
        page,
        pages,
        entries: slice,
    })
}

/// Why a fast-sync client refuses a header page from its server (the server lied).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderPageError {
    #[error("no headers from {from} though it serves a snapshot at {target}")]
    Empty { from: u64, target: u64 },
    #[error(transparent)]
    Invalid(#[from] HeaderChainError),
    #[error("headers from {from} brought nothing new")]
    NoProgress { from: u64 },
    #[error("a short page ends at {height}, below its snapshot at {target}")]
    EndsShort { height: u64, target: u64 },
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderChainError {
    #[error("header {got} does not follow {expected}")]
    Gap { expected: u64, got: u64 },
    #[error("header {height} names parent {got}, the verified header before it is {expected}")]
    WrongParent {
        height: u64,
        expected: BlockHash,
        got: BlockHash,
    },
    #[error("header {height}: {source}")]
    Certificate {
        height: u64,
        #[source]
        source: CertificateError,
    },
    #[error("header {height} changes the masternode set but the page does not carry it, or it does not hash to {expected}")]
    BadNextSet { height: u64, expected: Hash32 },
}

/// The verified header chain so far.
pub struct HeaderChain {
    network: Network,
    /// The set that signs the next header.
    set: MasternodeSet,
    /// The set that signed the last verified header.
    prev_set: MasternodeSet,
    last: Option<HeaderEntry>,
    tip_height: u64,
    tip_hash: BlockHash,
}

impl HeaderChain {
    /// Starts from genesis: its hash and the set that signs block 1.
    pub fn new(network: Network, genesis: BlockHash, genesis_set: MasternodeSet) -> HeaderChain {
        HeaderChain {
            network,
            prev_set: genesis_set.clone(),
            set: genesis_set,
            last: None,
            tip_height: 0,
            tip_hash: genesis,
        }
    }

    pub fn height(&self) -> u64 {
        self.tip_height
    }

    /// The last verified header with its certificate.
    pub fn last(&self) -> Option<&HeaderEntry> {
        self.last.as_ref()
    }

    /// The set after the last verified header, and the one that signed it.
    pub fn sets(&self) -> (&MasternodeSet, &MasternodeSet) {
        (&self.set, &self.prev_set)
    }

    /// Takes one page a fast-sync server sent toward its snapshot at `target`: verifies the
    /// headers up to `target` and checks the page contract. A page may stop early only where
    /// the contract lets it ([`page_is_full`]); one that stops short of `target` otherwise
    /// hides headers the server claimed to have.
    pub fn accept_page(
        &mut self,
        page: &[HeaderEntry],
        target: u64,
    ) -> Result<(), HeaderPageError> {
        let from = self.tip_height + 1;
        let wanted: Vec<HeaderEntry> = page
            .iter()
            .filter(|e| e.header.height <= target)
            .cloned()
            .collect();
        if wanted.is_empty() {
            return Err(HeaderPageError::Empty { from, target });
        }
        let before = self.tip_height;
        self.extend(&wanted)?;
        if self.tip_height == before {
            return Err(HeaderPageError::NoProgress { from });
        }
        if self.tip_height < target && !page_is_full(page) {
            return Err(HeaderPageError::EndsShort {
                height: self.tip_height,
                target,
            });
        }
        Ok(())
    }

    /// Verifies a page of headers in order; stops at the first bad one (the error says why;
    /// the headers before it stay accepted).
    pub fn extend(&mut self, page: &[HeaderEntry]) -> Result<(), HeaderChainError> {
        for e in page {
            let h = &e.header;
            if h.height <= self.tip_height {
                continue;
            }
            if h.height != self.tip_height + 1 {
                return Err(HeaderChainError::Gap {
                    expected: self.tip_height + 1,
                    got: h.height,
                });
            }
            if h.prev_hash != self.tip_hash {
                return Err(HeaderChainError::WrongParent {
                    height: h.height,
                    expected: self.tip_hash,
                    got: h.prev_hash,
                });
            }
            let hash = h.hash();
            verify_commit(&e.cert, &self.set, self.network, h.height, &hash).map_err(|source| {
                HeaderChainError::Certificate {
                    height: h.height,
                    source,
                }
            })?;
            let next = if h.next_masternode_set_hash == self.set.hash() {
                MasternodeSet::new(h.height, self.set.members().cloned())
            } else {
                let bad = HeaderChainError::BadNextSet {
                    height: h.height,
                    expected: h.next_masternode_set_hash,
                };
                let members = e.next_set.clone().ok_or(bad.clone())?;
                let set = MasternodeSet::new(h.height, members);
                if set.hash() != h.next_masternode_set_hash {
                    return Err(bad);
                }
                set
            };
            self.prev_set = std::mem::replace(&mut self.set, next);
            self.tip_height = h.height;
            self.tip_hash = hash;
            self.last = Some(e.clone());
        }
        Ok(())
    }
}

/// Why a complete snapshot does not match the verified header chain.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotCheckError {
    #[error("the verified headers end at {verified}, the snapshot is at {target}")]
    HeadersShort { verified: u64, target: u64 },
    #[error("the snapshot at {height} does not match the certified commitment {claimed} (its outputs commit to {computed})")]
    Commitment {
        height: u64,
        claimed: Hash32,
        computed: Hash32,
    },
}

/// Checks a whole snapshot taken at `target` against the last header of a verified chain:
/// the chain must reach `target` and the outputs must commit to that header's
/// `utxo_commitment`. Returns that header. What fast sync and a snapshot file both check
/// before installing anything.
pub fn check_snapshot<'a>(
    chain: &'a HeaderChain,
    target: u64,
    entries: &[SnapshotEntry],
) -> Result<&'a HeaderEntry, SnapshotCheckError> {
    let last = chain.last().filter(|l| l.header.height == target).ok_or(
        SnapshotCheckError::HeadersShort {
            verified: chain.height(),
            target,
        },
    )?;
    let computed = UtxoCommitment::of_set(entries.iter().map(|(o, e, _)| (o, e))).digest();
    if computed != last.header.utxo_commitment {
        return Err(SnapshotCheckError::Commitment {
            height: target,
            claimed: last.header.utxo_commitment,
            computed,
        });
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ConsensusVote, OutPoint, SecretKey, Tier, VoteKind};

    const NET: Network = Network::Localnet;

    fn set_of(keys: &[SecretKey], height: u64) -> MasternodeSet {
        MasternodeSet::new(
            height,
            keys.iter().enumerate().map(|(i, k)| {
                Masternode::of(k, Tier::Bronze, OutPoint::new(Hash32([i as u8; 32]), 0))
            }),
        )
    }

    fn header(height: u64, prev: BlockHash, next_set: Hash32) -> BlockHeader {
        BlockHeader {
            version: 1,
            height,
            prev_hash: prev,
            timestamp_ms: height,
            round: 0,
            proposer: SecretKey::from_bytes(&[9; 32]).public_key(),
            tx_root: Hash32::ZERO,
            witness_root: Hash32::ZERO,
            utxo_commitment: Hash32::ZERO,
            next_masternode_set_hash: next_set,
            last_commit_hash: Hash32::ZERO,
            evidence_root: Hash32::ZERO,
        }
    }

    fn certify(
        h: BlockHeader,
        signers: &[SecretKey],
        next_set: Option<Vec<Masternode>>,
    ) -> HeaderEntry {
        let hash = h.hash();
        let precommits = signers
            .iter()
            .map(|k| ConsensusVote::sign(k, NET, VoteKind::Precommit, h.height, 0, Some(hash)))
            .collect();
        HeaderEntry {
            cert: CommitCertificate {
                height: h.height,
                round: 0,
                block_hash: hash,
                precommits,
            },
            header: h,
            next_set,
        }
    }

    #[test]
    fn follows_certificates_and_set_changes_and_refuses_forgeries() {
        let old: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
        let new: Vec<SecretKey> = (5..=8u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
        let (old_set, new_set) = (set_of(&old, 0), set_of(&new, 1));
        let genesis = Hash32([7; 32]);
        // Block 1 is signed by the old set and hands over to the new one; block 2 by the new.
        let h1 = certify(
            header(1, genesis, new_set.hash()),
            &old[..3],
            Some(new_set.members().cloned().collect()),
        );
        let h2 = certify(header(2, h1.header.hash(), new_set.hash()), &new[..3], None);

        let mut chain = HeaderChain::new(NET, genesis, old_set.clone());
        chain.extend(&[h1.clone(), h2.clone()]).unwrap();
        assert_eq!(chain.height(), 2);
        assert_eq!(chain.sets().0.hash(), new_set.hash());

        // Two of four is not a quorum.
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        let weak = certify(h1.header.clone(), &old[..2], h1.next_set.clone());
        assert!(matches!(
            c.extend(&[weak]),
            Err(HeaderChainError::Certificate { height: 1, .. })
        ));
        // The new set cannot sign block 1, and the old one cannot sign block 2.
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        let usurped = certify(h1.header.clone(), &new[..3], h1.next_set.clone());
        assert!(c.extend(&[usurped]).is_err());
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        let stale = certify(h2.header.clone(), &old[..3], None);
        assert!(matches!(
            c.extend(&[h1.clone(), stale]),
            Err(HeaderChainError::Certificate { height: 2, .. })
        ));
        assert_eq!(c.height(), 1, "what verified before the bad header stays");
        // A set change without the members, or with members that do not hash right.
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        let hidden = certify(h1.header.clone(), &old[..3], None);
        assert!(matches!(
            c.extend(&[hidden]),
            Err(HeaderChainError::BadNextSet { .. })
        ));
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        let swapped = certify(
            h1.header.clone(),
            &old[..3],
            Some(old_set.members().cloned().collect()),
        );
        assert!(matches!(
            c.extend(&[swapped]),
            Err(HeaderChainError::BadNextSet { .. })
        ));
        // Gaps and foreign parents.
        let mut c = HeaderChain::new(NET, genesis, old_set.clone());
        assert!(matches!(
            c.extend(std::slice::from_ref(&h2)),
            Err(HeaderChainError::Gap { .. })
        ));
        let mut c = HeaderChain::new(NET, Hash32([8; 32]), old_set);
        assert!(matches!(
            c.extend(&[h1]),
            Err(HeaderChainError::WrongParent { .. })
        ));
    }
}
