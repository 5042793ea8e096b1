//! Fast sync against real storage: the header-page contract at a real network's masternode
//! set size, and a lying snapshot server that plants, strips and invents layer-1 locks.

use std::collections::BTreeSet;
use std::sync::Arc;
use timed::consensus::driver::{
    header_page, ConsensusDriver, DriverConfig, NodeEvent, Output, TimerKind, WireMessage,
};
use timed::consensus::genesis::{GenesisMasternode, GenesisSpec};
use timed::consensus::snapshot::{
    check_snapshot, page_is_full, HeaderChain, HeaderEntry, HeaderPageError, MAX_HEADERS,
};
use timed::consensus::{bft::BftConfig, finality::FinalityConfig, set_store, MasternodeSet};
use timed::ledger::{BlockTemplate, Ledger, LedgerParams, RewardSchedule};
use timed::mempool::PoolLimits;
use timed::storage::{Storage, WriteBatch};
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Block, CommitCertificate, ConsensusVote, Hash32, KeyHash, Network, OutPoint, SecretKey,
    Tier, TxOutput, Txid, VoteBatch, VoteKind, ATOMS_PER_TIME,
};

const NET: Network = Network::Localnet;
const GENESIS_MS: u64 = 1_000;

fn dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

fn ledger_params() -> LedgerParams {
    LedgerParams {
        network: NET,
        rewards: RewardSchedule {
            initial: Amount(10 * ATOMS_PER_TIME),
            halving_interval: 0,
        },
    }
}

fn open_ledger(dir: &tempfile::TempDir) -> Arc<Ledger> {
    let storage = Storage::open(&dir.path().join("db"), 16 << 20).unwrap();
    Arc::new(Ledger::open(storage, ledger_params()).unwrap())
}

/// A genesis whose Bronze masternodes are `operators`, funding `client` with `outputs`
/// outputs of 100 TIME.
fn genesis(operators: &[SecretKey], client: &SecretKey, outputs: usize) -> GenesisSpec {
    GenesisSpec {
        timestamp_ms: GENESIS_MS,
        rules: Default::default(),
        allocations: (0..outputs)
            .map(|_| (client.public_key().key_hash(), Amount(100 * ATOMS_PER_TIME)))
            .collect(),
        masternodes: operators
            .iter()
            .enumerate()
            .map(|(i, k)| {
                GenesisMasternode::new(
                    Tier::Bronze,
                    k,
                    k.public_key().key_hash(),
                    format!("127.0.0.1:{}", 40_000 + i),
                )
            })
            .collect(),
    }
}

/// A server's ledger holding `spec`'s genesis and its set (as a node's driver writes them).
fn server_ledger(
    dir: &tempfile::TempDir,
    spec: &GenesisSpec,
) -> (Arc<Ledger>, Block, MasternodeSet) {
    let ledger = open_ledger(dir);
    let (block, set) = spec.build();
    ledger.apply_genesis(&block).unwrap();
    let mut batch = WriteBatch::new();
    set_store::write(&mut batch, &set);
    ledger.storage().commit(batch).unwrap();
    (ledger, block, set)
}

/// A commit certificate for `block` signed by every one of `signers`.
fn certify(block: &Block, signers: &[SecretKey]) -> CommitCertificate {
    let hash = block.hash();
    CommitCertificate {
        height: block.header.height,
        round: 0,
        block_hash: hash,
        precommits: signers
            .iter()
            .map(|k| {
                ConsensusVote::sign(
                    k,
                    NET,
                    VoteKind::Precommit,
                    block.header.height,
                    0,
                    Some(hash),
                )
            })
            .collect(),
    }
}

/// Commits the next (empty) block, certified by `signers`; returns it and its certificate.
fn commit_next(
    ledger: &Ledger,
    set: &MasternodeSet,
    signers: &[SecretKey],
) -> (Block, CommitCertificate) {
    let height = ledger.height().unwrap() + 1;
    let block = ledger
        .build_block(BlockTemplate {
            timestamp_ms: GENESIS_MS + height * 1_000,
            round: 0,
            proposer: signers[0].public_key(),
            payees: vec![(signers[0].public_key().key_hash(), 1)],
            transactions: Vec::new(),
            next_masternode_set_hash: set.hash(),
            last_commit: None,
            max_transactions: 1,
        })
        .unwrap()
        .block;
    let cert = certify(&block, signers);
    ledger.apply_block(&block, &cert).unwrap();
    (block, cert)
}

fn keys(from: u8, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [from; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            SecretKey::from_bytes(&seed)
        })
        .collect()
}

/// Issue 16 §5: with 64 precommits per certificate a page reaches its byte bound long before
/// `MAX_HEADERS` headers. The client must take such a page from an honest server (the old
/// client refused any page of fewer than `MAX_HEADERS` headers ending below the target and
/// banned the server), and still refuse a page cut short anywhere else.
#[test]
fn header_pages_of_a_large_masternode_set_reach_the_target_and_short_cuts_are_refused() {
    let operators = keys(7, 64);
    let client = SecretKey::from_bytes(&[3; 32]);
    let spec = genesis(&operators, &client, 1);
    let d = dir();
    let (ledger, genesis_block, set) = server_ledger(&d, &spec);
    let target = MAX_HEADERS as u64 + 20;
    for _ in 0..target {
        commit_next(&ledger, &set, &operators);
    }

    let mut chain = HeaderChain::new(NET, genesis_block.hash(), set.clone());
    let mut pages = 0;
    while chain.height() < target {
        let page = header_page(ledger.storage(), chain.height() + 1).unwrap();
        pages += 1;
        if pages == 1 {
            assert!(
                page.len() < MAX_HEADERS,
                "the byte bound must bind first at this set size ({} headers)",
                page.len()
            );
            assert!(page_is_full(&page));
            // A server that hides the rest of a page is caught: the cut page is neither
            // full nor at the target.
            let mut cut = HeaderChain::new(NET, genesis_block.hash(), set.clone());
            assert!(matches!(
                cut.accept_page(&page[..page.len() / 2], target),
                Err(HeaderPageError::EndsShort { .. })
            ));
        }
        chain
            .accept_page(&page, target)
            .unwrap_or_else(|e| panic!("an honest page was refused: {e}"));
    }
    assert_eq!(chain.height(), target);
    assert!(pages >= 2, "the chain took {pages} page(s)");
}

/// The client-side facts of a fresh masternode: its driver, on its own database.
struct Fresh {
    dir: tempfile::TempDir,
    key: SecretKey,
    spec: GenesisSpec,
}

impl Fresh {
    fn config(&self) -> DriverConfig {
        DriverConfig {
            network: NET,
            key: Some(self.key.clone()),
            finality: FinalityConfig::new(NET),
            bft: BftConfig::new(NET, 60_000),
            pool: PoolLimits::default(),
            max_block_txs: 1_000,
        }
    }

    fn open(&self, now: u64) -> (ConsensusDriver, Vec<Output>) {
        ConsensusDriver::open(self.config(), open_ledger(&self.dir), &self.spec, now).unwrap()
    }
}

/// Txids this node's own vote batches name, in `out`.
fn own_votes(out: &[Output], me: &SecretKey) -> BTreeSet<Txid> {
    out.iter()
        .filter_map(|o| match o {
            Output::BroadcastDurable(WireMessage::VoteBatch(b)) if b.voter == me.public_key() => {
                Some(b.txids.clone())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Feeds `msg` and flushes the vote buffer; returns everything the driver said.
fn feed(driver: &mut ConsensusDriver, msg: WireMessage, now: &mut u64) -> Vec<Output> {
    *now += 10;
    let mut out = driver.on_message(99, msg, *now).unwrap();
    *now += 100;
    out.extend(driver.on_timer(TimerKind::VoteBatch, *now).unwrap());
    out
}

/// Issue 11 §4: a snapshot server lies about layer-1 locks, which no certificate covers: it
/// plants a lock to a txid nobody saw, strips the lock the network holds on another output,
/// and names a foreign transaction as the lock of a third. Everything the client can check
/// (certified header, commitment) passes. The fresh masternode must never vote for a spend
/// of any of those outputs, neither live nor after a restart (`resume`), yet it still counts
/// the others' votes and finalizes what they decide.
#[test]
fn a_lying_snapshot_server_cannot_make_a_fresh_masternode_vote_for_a_conflicting_spend() {
    let operators = keys(9, 4);
    let owner = SecretKey::from_bytes(&[5; 32]);
    let spec = genesis(&operators, &owner, 3);
    let server_dir = dir();
    let (server, genesis_block, set) = server_ledger(&server_dir, &spec);
    let (block1, cert1) = commit_next(&server, &set, &operators);
    let (tip, mut entries) = server.snapshot_entries();
    assert_eq!(tip.unwrap().height, 1);

    // The owner's three outputs, and what the network really did with two of them.
    let coin = |n: usize| -> OutPoint {
        entries
            .iter()
            .filter(|(_, e, _)| e.output.key_hash == owner.public_key().key_hash())
            .map(|(op, _, _)| *op)
            .nth(n)
            .unwrap()
    };
    let (planted, stripped, foreign) = (coin(0), coin(1), coin(2));
    let pay = |inputs: &[OutPoint], to: u8| {
        signed_transfer(
            NET,
            &owner,
            inputs,
            vec![TxOutput {
                amount: Amount(99 * ATOMS_PER_TIME),
                key_hash: KeyHash([to; 20]),
            }],
        )
    };
    let locked_by_network = pay(&[stripped], 1); // voted on by the quorum, never shown
    let elsewhere = pay(&[coin(0)], 2); // a real transaction spending another output
    let invented: Txid = Hash32([0xEE; 32]);
    for (op, _, lock) in entries.iter_mut() {
        if *op == planted {
            *lock = Some(invented);
        } else if *op == stripped {
            *lock = None;
        } else if *op == foreign {
            *lock = Some(elsewhere.txid());
        }
    }
    let last = HeaderEntry {
        header: block1.header.clone(),
        cert: cert1,
        next_set: None,
    };
    // All the client can check passes: the lie is only in the locks.
    let mut chain = HeaderChain::new(NET, genesis_block.hash(), set.clone());
    chain.accept_page(std::slice::from_ref(&last), 1).unwrap();
    check_snapshot(&chain, 1, &entries).unwrap();

    // A fresh masternode (one of the four) installs it.
    let me = operators[0].clone();
    let fresh = Fresh {
        dir: dir(),
        key: me.clone(),
        spec: spec.clone(),
    };
    let mut now = GENESIS_MS + 10_000;
    let (mut driver, _) = fresh.open(now);
    let (cur, prev) = chain.sets();
    driver
        .import_snapshot(&last, cur.clone(), prev.clone(), entries.clone(), now)
        .unwrap()
        .unwrap();

    // The conflicting spend of the stripped output, and honest spends of the others.
    let conflicting = pay(&[stripped], 3);
    assert_ne!(conflicting.txid(), locked_by_network.txid());
    let spends = [conflicting.clone(), pay(&[planted], 4), pay(&[foreign], 5)];
    let mut said = Vec::new();
    for tx in &spends {
        said.extend(feed(
            &mut driver,
            WireMessage::Transaction(Arc::new(tx.clone())),
            &mut now,
        ));
    }
    let voted = own_votes(&said, &me);
    assert!(
        voted.is_empty(),
        "the fresh masternode voted for spends of outputs it cannot prove: {voted:?}"
    );

    // It still counts the others' votes: three of four finalize the conflicting spend here.
    let set_height = driver.set().height();
    let mut finalized = false;
    for (i, k) in operators[1..].iter().enumerate() {
        let batch = VoteBatch::sign(
            k,
            NET,
            (set_height, driver.set().hash()),
            1 + i as u64,
            vec![conflicting.txid()],
        );
        let out = feed(
            &mut driver,
            WireMessage::VoteBatch(Arc::new(batch)),
            &mut now,
        );
        finalized |= out.iter().any(
            |o| matches!(o, Output::Event(NodeEvent::TxFinalized(t, _)) if *t == conflicting.txid()),
        );
        assert!(own_votes(&out, &me).is_empty());
    }
    assert!(
        finalized,
        "others' quorum finalizes it on the fresh node too"
    );

    // After a restart, `resume` signs nothing: no planted, foreign or abstained txid.
    drop(driver);
    now += 1_000;
    let (mut driver, out) = fresh.open(now);
    let voted = own_votes(&out, &me);
    assert!(
        voted.is_empty(),
        "resume signed for txids this node never locked: {voted:?}"
    );
    let out = driver.on_timer(TimerKind::VoteBatch, now + 100).unwrap();
    assert!(own_votes(&out, &me).is_empty());
}
