//! Four consensus services on one tokio runtime, in real time, connected by an in-memory
//! transport: a transfer submitted to one becomes final on all four, and blocks commit.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use timed::consensus::bft::BftConfig;
use timed::consensus::driver::{ConsensusDriver, DriverConfig, NodeEvent, PeerId, WireMessage};
use timed::consensus::finality::FinalityConfig;
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::consensus::service::{self, wall_clock_ms, ConsensusHandle, Transport};
use timed::ledger::{Ledger, LedgerParams, RewardSchedule};
use timed::mempool::{PoolError, PoolLimits};
use timed::storage::Storage;
use timed::types::transfer::signed_transfer;
use timed::types::{Amount, Network, OutPoint, SecretKey, Tier, TxOutput, ATOMS_PER_TIME};
use tokio_util::sync::CancellationToken;

const NET: Network = Network::Localnet;

/// Delivers every message to every other node's service.
struct Mesh {
    me: usize,
    nodes: Arc<OnceLock<Vec<ConsensusHandle>>>,
    /// Each node's operator key, by index, for messages sent to a node by key.
    operators: Arc<Vec<timed::types::PublicKey>>,
    /// Every peer fault reported to this node's transport.
    faults: Arc<Mutex<Vec<PeerId>>>,
}

impl Transport for Mesh {
    fn broadcast(&self, msg: WireMessage) {
        if let Some(nodes) = self.nodes.get() {
            for (i, n) in nodes.iter().enumerate() {
                if i != self.me {
                    n.deliver(self.me as PeerId, msg.clone());
                }
            }
        }
    }

    fn send(&self, peer: PeerId, msg: WireMessage) {
        if let Some(n) = self.nodes.get().and_then(|n| n.get(peer as usize)) {
            n.deliver(self.me as PeerId, msg);
        }
    }

    fn send_to_node(&self, node: &timed::types::PublicKey, msg: WireMessage) {
        if let Some(i) = self.operators.iter().position(|k| k == node) {
            self.send(i as PeerId, msg);
        }
    }

    fn punish(&self, peer: PeerId, _why: &str) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(peer);
        }
    }

    fn penalize(&self, peer: PeerId, _points: u32, _why: &str) {
        if let Ok(mut f) = self.faults.lock() {
            f.push(peer);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_services_finalize_a_transfer_and_commit_blocks() {
    let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
    let client = SecretKey::from_bytes(&[77; 32]);
    let genesis = GenesisSpec {
        timestamp_ms: wall_clock_ms(),
        rules: Default::default(),
        allocations: vec![(client.public_key().key_hash(), Amount(50 * ATOMS_PER_TIME))],
        masternodes: keys
            .iter()
            .map(|k| {
                GenesisMasternode::new(Tier::Bronze, k, k.public_key().key_hash(), String::new())
            })
            .collect(),
    };
    let shutdown = CancellationToken::new();
    let mesh = Arc::new(OnceLock::new());
    let operators = Arc::new(keys.iter().map(SecretKey::public_key).collect::<Vec<_>>());
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    // The door and flusher tasks of every node, awaited at the end like the owners.
    let helpers = tokio_util::task::TaskTracker::new();
    let mut dirs = Vec::new();
    let mut faults = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
        let params = LedgerParams {
            network: NET,
            rewards: RewardSchedule {
                initial: Amount(ATOMS_PER_TIME),
                halving_interval: 0,
            },
        };
        let ledger = Arc::new(Ledger::open(storage, params).unwrap());
        let cfg = DriverConfig {
            network: NET,
            key: Some(key.clone()),
            finality: FinalityConfig::new(NET),
            bft: BftConfig::new(NET, 300),
            pool: PoolLimits::default(),
            max_block_txs: 1_000,
        };
        let (driver, initial) =
            ConsensusDriver::open(cfg, ledger, &genesis, wall_clock_ms()).unwrap();
        let transport = Arc::new(Mesh {
            me: i,
            nodes: Arc::clone(&mesh),
            operators: Arc::clone(&operators),
            faults: Arc::new(Mutex::new(Vec::new())),
        });
        faults.push(Arc::clone(&transport.faults));
        let (handle, task) = service::spawn(driver, initial, transport, shutdown.clone(), &helpers);
        handles.push(handle);
        tasks.push(task);
        dirs.push(dir);
    }
    let _ = mesh.set(handles.clone());
    let mut subscriptions: Vec<_> = handles.iter().map(ConsensusHandle::subscribe).collect();

    let (genesis_block, _) = genesis.build();
    let funding = OutPoint::new(genesis_block.transactions[0].txid(), 0);
    let tx = signed_transfer(
        NET,
        &client,
        &[funding],
        vec![TxOutput {
            amount: Amount(49 * ATOMS_PER_TIME),
            key_hash: keys[0].public_key().key_hash(),
        }],
    );
    // Each node's published finality proof of the transfer, looked up the moment the node
    // reports it final (peers' `GetFinality` is answered from this view): published before
    // the event, gone once a block confirms it, so a watcher may find it already gone.
    let watchers: Vec<_> = handles
        .iter()
        .map(|h| {
            let (mut events, proofs, txid) = (h.subscribe(), h.finality_proofs(), tx.txid());
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::TxsFinalized(txs)) if txs.iter().any(|(t, _)| *t == txid) => {
                            // The node's own vote shows in its view once the flusher has made
                            // its locks durable, a moment after: wait for it (or for a block
                            // to confirm the transfer, which lets the proof go).
                            let until = tokio::time::Instant::now() + Duration::from_secs(30);
                            loop {
                                match proofs.get(&txid) {
                                    Some(p) if p.batches.len() >= 3 => return Some(p),
                                    Some(p) if tokio::time::Instant::now() >= until => {
                                        return Some(p)
                                    }
                                    None => return None,
                                    Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                                }
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    // A forged signature is refused at the door, with the reason, before the owner sees it.
    let mut forged = tx.clone();
    forged.inputs[0].signature.0[0] ^= 1;
    assert!(matches!(
        handles[0].submit(forged).await,
        Err(service::SubmitError::Rejected(PoolError::Invalid(_)))
    ));
    let txid = handles[0].submit(tx.clone()).await.expect("accepted");
    assert_eq!(txid, tx.txid());
    // The same transaction again is not accepted twice: still pooled, or final already.
    let again = handles[0].submit(tx).await;
    assert!(
        matches!(
            &again,
            Err(service::SubmitError::Rejected(
                PoolError::AlreadyInPool { .. }
            ))
        ) || matches!(
            &again,
            Err(service::SubmitError::Rejected(PoolError::Ledger { source, .. }))
                if matches!(**source, timed::ledger::LedgerError::AlreadyFinal { .. })
        ),
        "{again:?}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (i, sub) in subscriptions.iter_mut().enumerate() {
        let mut final_seen = false;
        let mut height = 0;
        while !(final_seen && height >= 3) {
            let event = tokio::time::timeout_at(deadline, sub.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("node {i}: final={final_seen} height={height} at deadline")
                })
                .expect("events flow");
            match event {
                NodeEvent::TxsFinalized(txs) if txs.iter().any(|(t, _)| *t == txid) => {
                    final_seen = true
                }
                NodeEvent::BlockCommitted { height: h, .. } => height = height.max(h),
                _ => {}
            }
        }
    }

    let mut published = 0;
    for w in watchers {
        if let Some(proof) = w.await.expect("the watcher ends") {
            assert_eq!(proof.tx.txid(), txid);
            assert!(
                proof.batches.len() >= 3,
                "a quorum of the four Bronze members: {} batches",
                proof.batches.len()
            );
            assert!(proof.batches.iter().all(|b| b.txids.contains(&txid)));
            published += 1;
        }
    }
    assert!(published > 0, "no node had published the transfer's proof");
    // Once a block confirms the transfer, the views let it go.
    for h in &handles {
        let proofs = h.finality_proofs();
        loop {
            let confirmed = h
                .query(move |d| d.ledger().final_tx(&txid).is_none())
                .await
                .expect("the service runs");
            if confirmed && proofs.get(&txid).is_none() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proof outlives its confirmation"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A peer serving a block that conflicts with a committed one is reported as at fault.
    let (block, cert) = handles[1]
        .query(|d| {
            let s = d.ledger().storage();
            (
                s.block_at(2).unwrap().unwrap(),
                s.commit_at(2).unwrap().unwrap(),
            )
        })
        .await
        .unwrap();
    let mut forged = block.clone();
    forged.header.timestamp_ms += 1;
    let mut sub = handles[0].subscribe();
    assert!(handles[0].deliver(
        99,
        WireMessage::Blocks(vec![(Arc::new(forged), cert.clone())])
    ));
    loop {
        let event = tokio::time::timeout_at(deadline, sub.recv())
            .await
            .expect("a fault is reported")
            .expect("events flow");
        if let NodeEvent::PeerFault { peer, reason } = event {
            assert_eq!(peer, 99);
            assert!(reason.contains("height 2"), "{reason}");
            break;
        }
    }

    // A burst of faults while an event subscriber lags: the subscriber misses events, the
    // transport (the network's ban registry) gets every one of them.
    let mut lagging = handles[0].subscribe();
    let burst = service::EVENT_QUEUE + 200;
    let before = faults[0].lock().unwrap().len();
    let mut forged = block.clone();
    forged.header.timestamp_ms += 2;
    let forged = Arc::new(forged);
    let mut sent = 0;
    while sent < burst {
        if handles[0].deliver(
            98,
            WireMessage::Blocks(vec![(Arc::clone(&forged), cert.clone())]),
        ) {
            sent += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let wait_until = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = faults[0].lock().unwrap()[before..]
            .iter()
            .filter(|p| **p == 98)
            .count();
        if got == burst {
            break;
        }
        assert!(
            tokio::time::Instant::now() < wait_until,
            "{got} of {burst} faults reached the transport"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        matches!(
            lagging.recv().await,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
        ),
        "the event channel dropped what the lagging subscriber did not read"
    );

    shutdown.cancel();
    for t in tasks {
        t.await.expect("task joins").expect("service ends cleanly");
    }
    // The door ends at the shutdown, each flusher once its owner ended: nothing is left running.
    helpers.close();
    tokio::time::timeout(std::time::Duration::from_secs(30), helpers.wait())
        .await
        .expect("the door and flusher tasks end after the owners");
}
