//! When a node is ready to serve: it has caught up with its peers, and it is connected to
//! masternodes carrying a quorum (more than two thirds) of the voting weight, counting its
//! own weight if it is one. Without that quorum it can neither finalize a transaction nor
//! commit a block, so a load balancer should send clients elsewhere.

use crate::consensus::MasternodeSet;
use crate::context::{NodeContext, SYNCED_WITHIN};
use crate::types::PublicKey;
use std::collections::BTreeSet;

/// Why the node is not ready; its `Display` is the body of the 503.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down")]
    ShuttingDown,
    #[error("disk low: {free_mib} MiB free, below the {reserve_mib} MiB reserve (min_free_disk_mb); not taking new work")]
    DiskLow { free_mib: u64, reserve_mib: u64 },
    #[error("no chain yet")]
    NoChain,
    #[error("syncing: height {height} of {target}")]
    Syncing { height: u64, target: u64 },
    #[error(
        "no quorum: connected to masternode weight {connected} of {total}, more than two thirds needed"
    )]
    NoQuorum { connected: u64, total: u64 },
}

/// What readiness is decided from, read from the node in one go.
#[derive(Clone, Debug)]
pub struct ReadyInputs {
    pub height: u64,
    /// The highest height a connected peer is proven to have (a verified vote or proposal
    /// of the next height, or certified blocks it served); a hello's claim never counts, so
    /// no peer can hold this node at "syncing" by saying so.
    pub best_peer_height: u64,
    pub own_key: PublicKey,
    pub connected: Vec<PublicKey>,
}

/// The voting masternodes of a set that a node reaches: those it is connected to and itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub masternodes: u64,
    pub weight: u64,
}

/// What `own_key` and the peers `connected` (each key once) hold of `set`'s voting weight.
pub fn reach(own_key: &PublicKey, connected: &[PublicKey], set: &MasternodeSet) -> Reach {
    let keys: BTreeSet<&PublicKey> = connected.iter().chain(std::iter::once(own_key)).collect();
    keys.into_iter()
        .map(|k| set.weight_of(k))
        .filter(|w| *w > 0)
        .fold(
            Reach {
                masternodes: 0,
                weight: 0,
            },
            |r, w| Reach {
                masternodes: r.masternodes + 1,
                weight: r.weight.saturating_add(w),
            },
        )
}

/// The rule: synced first (within [`SYNCED_WITHIN`] blocks of the best peer), then the
/// connected weight (each key once, this node's own included) must be a quorum of `set`.
pub fn check(inputs: &ReadyInputs, set: &MasternodeSet) -> Result<(), NotReady> {
    let target = inputs.best_peer_height.max(inputs.height);
    if target - inputs.height > SYNCED_WITHIN {
        return Err(NotReady::Syncing {
            height: inputs.height,
            target,
        });
    }
    let connected = reach(&inputs.own_key, &inputs.connected, set).weight;
    if !set.has_quorum(connected) {
        return Err(NotReady::NoQuorum {
            connected,
            total: set.total_weight(),
        });
    }
    Ok(())
}

/// Readiness of the running node.
pub fn of_node(ctx: &NodeContext) -> Result<(), NotReady> {
    if ctx.shutdown.is_cancelled() {
        return Err(NotReady::ShuttingDown);
    }
    if ctx.disk.is_low() {
        let (free, reserve) = ctx.disk.free_and_reserve();
        return Err(NotReady::DiskLow {
            free_mib: free >> 20,
            reserve_mib: reserve >> 20,
        });
    }
    let height = ctx.ledger.height().ok_or(NotReady::NoChain)?;
    let inputs = ReadyInputs {
        height,
        best_peer_height: ctx.network.best_peer_height(),
        own_key: ctx.node_key,
        connected: ctx.network.connected_keys(),
    };
    check(&inputs, &ctx.masternodes.load())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Masternode;
    use crate::types::{Hash32, OutPoint, SecretKey, Tier};

    fn key(i: u8) -> PublicKey {
        SecretKey::from_bytes(&[i; 32]).public_key()
    }

    fn set(tiers: &[Tier]) -> MasternodeSet {
        MasternodeSet::new(
            0,
            tiers.iter().enumerate().map(|(i, tier)| {
                Masternode::of(
                    &SecretKey::from_bytes(&[i as u8 + 1; 32]),
                    *tier,
                    OutPoint::new(Hash32([i as u8 + 1; 32]), 0),
                )
            }),
        )
    }

    fn inputs(height: u64, best: u64, own: u8, connected: &[u8]) -> ReadyInputs {
        ReadyInputs {
            height,
            best_peer_height: best,
            own_key: key(own),
            connected: connected.iter().map(|i| key(*i)).collect(),
        }
    }

    #[test]
    fn ready_needs_sync_and_a_quorum_counting_own_weight() {
        let four = set(&[Tier::Bronze; 4]);
        let no_quorum = |connected| {
            Err(NotReady::NoQuorum {
                connected,
                total: 4,
            })
        };
        // (inputs, expected): masternodes 1..=4 of equal weight; key 9 is not one.
        let table = [
            (inputs(10, 10, 1, &[2, 3]), Ok(())),
            (inputs(10, 10, 1, &[2]), no_quorum(2)),
            (inputs(10, 10, 1, &[]), no_quorum(1)),
            (inputs(10, 10, 9, &[1, 2]), no_quorum(2)),
            (inputs(10, 10, 9, &[1, 2, 3]), Ok(())),
            // A key connected twice, or our own key among peers, counts once.
            (inputs(10, 10, 1, &[1, 2, 2]), no_quorum(2)),
            // One block behind is synced; two is not, whatever the peers.
            (inputs(10, 11, 1, &[2, 3, 4]), Ok(())),
            (
                inputs(10, 12, 1, &[2, 3, 4]),
                Err(NotReady::Syncing {
                    height: 10,
                    target: 12,
                }),
            ),
        ];
        for (i, (inp, want)) in table.into_iter().enumerate() {
            assert_eq!(check(&inp, &four), want, "row {i}");
        }
        // Weight, not count: a gold masternode and one bronze outweigh two bronzes.
        let mixed = set(&[Tier::Gold, Tier::Bronze, Tier::Bronze, Tier::Bronze]);
        assert_eq!(check(&inputs(5, 5, 1, &[2]), &mixed), Ok(()));
        assert!(check(&inputs(5, 5, 2, &[3, 4]), &mixed).is_err());
        // No masternodes at all: nothing can be final, never ready.
        assert!(check(&inputs(0, 0, 1, &[]), &set(&[])).is_err());
    }

    #[test]
    fn reach_counts_each_voting_masternode_once() {
        let mixed = set(&[Tier::Gold, Tier::Bronze, Tier::Free, Tier::Bronze]);
        let r = |own: u8, peers: &[u8]| {
            let peers: Vec<PublicKey> = peers.iter().map(|i| key(*i)).collect();
            reach(&key(own), &peers, &mixed)
        };
        // Own key (gold) and a bronze peer met twice; the free-tier member has no vote.
        assert_eq!(
            r(1, &[2, 2, 3]),
            Reach {
                masternodes: 2,
                weight: 101
            }
        );
        // Not a masternode itself, and a stranger among the peers.
        assert_eq!(
            r(9, &[4, 8]),
            Reach {
                masternodes: 1,
                weight: 1
            }
        );
    }

    #[test]
    fn the_reason_is_short_plain_text() {
        let e = NotReady::NoQuorum {
            connected: 1,
            total: 4,
        };
        assert_eq!(
            e.to_string(),
            "no quorum: connected to masternode weight 1 of 4, more than two thirds needed"
        );
    }
}
