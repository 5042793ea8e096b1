//! The fuzz corpus as a smoke test on stable: every file kept in `fuzz/corpus/<target>/` goes
//! through the same target body (`timed::fuzzing`) that cargo-fuzz runs, so a crash once found
//! stays fixed and every target runs in CI.
//!
//! The seeds (`seed-*` files) come from real encodings made here; regenerate them with
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` (README, "Fuzzing"). Other
//! files are inputs that once crashed a target (`crash-*`), kept as regressions.

mod chain;

use bytes::BytesMut;
use chain::{key, kh, TestChain, NET};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use timed::backup::container::{ContainerReader, ContainerWriter, Kind};
use timed::backup::snapshot::{read_verified, SnapshotChunk, SnapshotHeader};
use timed::consensus::driver::WireMessage;
use timed::consensus::snapshot::{HeaderEntry, SnapshotPage};
use timed::fuzzing::files::{genesis_spec, PIECES, RAW};
use timed::fuzzing::{join_pieces, TARGETS};
use timed::ledger::UtxoCommitment;
use timed::network::frame::{Frame, FrameCodec};
use timed::network::handshake::{LocalIdentity, Offer};
use timed::network::message::NetMessage;
use timed::types::block::BLOCK_VERSION;
use timed::types::{
    codec, Amount, Block, BlockHeader, Canonical, CommitCertificate, CompactProposal,
    ConsensusVote, Evidence, Hash32, OutPoint, Proposal, Transaction, TxOutput, UtxoEntry,
    VoteBatch, VoteKind,
};
use tokio_util::codec::Encoder;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_target() {
    let mut failed = Vec::new();
    for (name, body) in TARGETS {
        let files = files_of(&corpus_dir().join(name));
        assert!(!files.is_empty(), "target {name} has no corpus");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failed.push(f.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their target: {failed:#?}"
    );
}

#[test]
fn every_target_has_a_cargo_fuzz_binary_and_nothing_else_does() {
    let manifest = std::fs::read_to_string(corpus_dir().join("../Cargo.toml")).unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "timed-fuzz")
        .collect();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(bins, names);
    for n in names {
        let src =
            std::fs::read_to_string(corpus_dir().join(format!("../fuzz_targets/{n}.rs"))).unwrap();
        assert!(
            src.contains(&format!("timed::fuzzing::{n}(data)")),
            "fuzz_targets/{n}.rs does not run timed::fuzzing::{n}"
        );
    }
}

/// The seeds reach the deepest checks of their targets: a seed snapshot verifies against the
/// fuzzed chain, so mutations start from a file that gets through every check.
#[test]
fn the_snapshot_seed_verifies() {
    let file = snapshot_file();
    let (genesis, set) = genesis_spec().build();
    let (v, _) = read_verified(&file[..], NET, &genesis, &set).unwrap();
    assert_eq!(v.header.height, 1);
    assert_eq!(v.entries.len(), 2);
}

#[test]
#[ignore = "writes the seed corpus: cargo test --test fuzz_corpus -- --ignored write_seed_corpus"]
fn write_seed_corpus() {
    for (target, seeds) in seeds() {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in files_of(&dir) {
            let name = old.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("seed-") {
                std::fs::remove_file(old).unwrap();
            }
        }
        for (label, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{label}")), bytes).unwrap();
        }
    }
}

type Seeds = Vec<(&'static str, Vec<(String, Vec<u8>)>)>;

/// Real encodings for every target.
fn seeds() -> Seeds {
    let mut chain = TestChain::new(4);
    let (a, b) = (key(1), key(2));
    let pay = chain.transfer(
        &a,
        &[chain.genesis_outputs[0]],
        &[(kh(&b), Amount(40)), (kh(&a), Amount(50))],
    );
    let block = chain.commit(vec![pay.clone()]);
    let coinbase = block.transactions[0].clone();
    let registration = registration(&chain);
    let vote = ConsensusVote::sign(&a, NET, VoteKind::Precommit, 1, 0, Some(block.hash()));
    let batch = VoteBatch::sign(&a, NET, (0, Hash32([4; 32])), 1, vec![pay.txid()]);
    let cert = CommitCertificate {
        height: 1,
        round: 0,
        block_hash: block.hash(),
        precommits: vec![vote.clone()],
    };
    let messages = messages(&block, &pay, &vote, &batch, &cert);
    let named = |items: Vec<(&str, Vec<u8>)>| {
        items
            .into_iter()
            .map(|(l, b)| (l.to_string(), b))
            .collect::<Vec<_>>()
    };
    let mut wire = Vec::new();
    for m in &messages {
        let f = m.to_frame();
        let mut bytes = vec![f.kind];
        bytes.extend_from_slice(&f.body);
        let label = timed::network::message::kind_name(f.kind);
        wire.push((label.to_string(), bytes));
    }
    vec![
        (
            "transaction",
            named(vec![
                ("transfer", pay.to_bytes()),
                ("coinbase", coinbase.to_bytes()),
                ("registration", registration.to_bytes()),
            ]),
        ),
        (
            "block",
            named(vec![
                ("genesis", genesis_spec().build().0.to_bytes()),
                ("with-transfer", block.to_bytes()),
            ]),
        ),
        ("wire_message", wire),
        ("frame", named(frames(&messages))),
        ("handshake", named(vec![("hello-proof", handshake())])),
        ("rpc_body", named(rpc_bodies())),
        ("rpc_params", named(rpc_params(&pay))),
        ("config_file", named(config_files())),
        ("genesis_file", named(vec![("localnet", genesis_json())])),
        ("backup_file", named(backup_seeds(&chain))),
        ("snapshot_file", named(snapshot_seeds())),
    ]
}

fn registration(chain: &TestChain) -> Transaction {
    let owner = key(2);
    let operator = key(9);
    let mut tx = timed::types::transfer::signed_with_payload(
        NET,
        &owner,
        &[chain.genesis_outputs[1]],
        vec![TxOutput {
            amount: Amount(10),
            key_hash: kh(&owner),
        }],
        timed::types::TxPayload::from(timed::types::MasternodeRegistration::new(
            timed::types::Tier::Bronze,
            chain.genesis_outputs[1],
            &operator,
            "203.0.113.7:24000".into(),
        )),
    );
    tx.sign_operator(NET, &operator);
    tx
}

/// One message of every kind.
fn messages(
    block: &Block,
    pay: &Transaction,
    vote: &ConsensusVote,
    batch: &VoteBatch,
    cert: &CommitCertificate,
) -> Vec<NetMessage> {
    let a = key(1);
    let me = identity();
    let offer = Offer::new(&me, &a, 7, 1_800_000_000_000);
    let proof = offer.prove(&a, &offer.hello);
    let proposal = Proposal::sign(&a, NET, 1, 0, None, block.clone());
    let compact = CompactProposal::of(&proposal).expect("a block with a coinbase");
    let other = ConsensusVote::sign(&a, NET, VoteKind::Precommit, 1, 0, Some(Hash32([5; 32])));
    let entry = HeaderEntry {
        header: block.header.clone(),
        cert: cert.clone(),
        next_set: None,
    };
    let utxo = UtxoEntry {
        output: pay.outputs[0],
        height: Some(1),
        coinbase: false,
    };
    let c = NetMessage::Consensus;
    vec![
        NetMessage::Hello(offer.hello.clone()),
        NetMessage::Proof(proof),
        NetMessage::Ping(7),
        NetMessage::Pong(7),
        NetMessage::Addr(vec!["127.0.0.1:24200".into(), "[::1]:24000".into()]),
        c(WireMessage::Transaction(Arc::new(pay.clone()))),
        c(WireMessage::VoteBatch(Arc::new(batch.clone()))),
        c(WireMessage::Proposal(Arc::new(proposal))),
        c(WireMessage::CompactProposal(Arc::new(compact))),
        c(WireMessage::GetProposal {
            height: 1,
            round: 0,
        }),
        c(WireMessage::Vote(vote.clone())),
        c(WireMessage::GetFinality(pay.txid())),
        c(WireMessage::TxInv(Arc::new(vec![
            pay.txid(),
            Hash32([0xa1; 32]),
        ]))),
        c(WireMessage::GetTxs(Arc::new(vec![pay.txid()]))),
        c(WireMessage::Finality {
            tx: Arc::new(pay.clone()),
            batches: vec![Arc::new(batch.clone())],
        }),
        c(WireMessage::GetBlocks { from_height: 1 }),
        c(WireMessage::Blocks(vec![(
            Arc::new(block.clone()),
            cert.clone(),
        )])),
        c(WireMessage::GetHeaders { from_height: 1 }),
        c(WireMessage::Headers(Arc::new(vec![entry]))),
        c(WireMessage::GetSnapshot { height: 1, page: 0 }),
        c(WireMessage::Snapshot(Arc::new(SnapshotPage {
            height: 1,
            page: 0,
            pages: 1,
            entries: vec![(OutPoint::new(pay.txid(), 0), utxo, None)],
        }))),
        c(WireMessage::Evidence(Arc::new(Evidence::layer2(
            vote.clone(),
            other,
        )))),
    ]
    .into_iter()
    .chain(slot_messages(pay).into_iter().map(c))
    .collect()
}

/// The slot engine's messages, over a batch holding `pay`.
fn slot_messages(pay: &Transaction) -> Vec<WireMessage> {
    use timed::types::hash::MerkleTree;
    use timed::types::slot::{
        share_message, BatchAnnouncement, LockReport, SlotCertificate, SlotFinalityProof, SlotShare,
    };
    use timed::types::BlsSecretKey;
    let a = key(1);
    let set_hash = Hash32([0x5e; 32]);
    let txids = vec![pay.txid(), Hash32([0xa2; 32])];
    let announcement = BatchAnnouncement::sign(&a, NET, set_hash, (17, 0), txids.clone());
    let root = announcement.root();
    let signature = BlsSecretKey::from_operator(&a).sign(&share_message(NET, &set_hash, 17, &root));
    let certificate = SlotCertificate {
        set_hash,
        slot: 17,
        root,
        signers: SlotCertificate::bitmap(4, [0]),
        aggregate: signature,
    };
    let path = MerkleTree::new(&txids)
        .path(0)
        .expect("a path to the first of two leaves");
    vec![
        WireMessage::SlotAnnouncement(Arc::new(announcement)),
        WireMessage::SlotShare(SlotShare {
            set_hash,
            slot: 17,
            root,
            voter: a.public_key(),
            signature,
        }),
        WireMessage::LockReport(Arc::new(LockReport {
            set_hash,
            slot: 17,
            root,
            voter: a.public_key(),
            cannot_lock: vec![Hash32([0xa2; 32])],
        })),
        WireMessage::SlotCertificate(Arc::new(certificate.clone())),
        WireMessage::GetSlotBatch { slot: 17, root },
        WireMessage::SlotFinality {
            tx: Arc::new(pay.clone()),
            proof: Arc::new(SlotFinalityProof {
                txid: pay.txid(),
                path,
                certificate,
            }),
        },
    ]
}

fn identity() -> LocalIdentity {
    LocalIdentity {
        network: NET,
        genesis: Hash32([9; 32]),
        listen_addr: "127.0.0.1:24201".into(),
        nonce: 1,
    }
}

/// Streams of frames as the codec writes them: small ones, and one large enough to be
/// compressed; also the list form the authenticated round trip reads.
fn frames(messages: &[NetMessage]) -> Vec<(&'static str, Vec<u8>)> {
    let mut small = BytesMut::new();
    for m in messages.iter().take(5) {
        FrameCodec.encode(m.to_frame(), &mut small).unwrap();
    }
    let mut large = BytesMut::new();
    let big = Frame {
        kind: 17,
        body: (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect(),
    };
    FrameCodec.encode(big, &mut large).unwrap();
    let mut list = Vec::new();
    for (kind, len) in [(2u8, 2u8), (10, 100), (17, 200)] {
        list.extend_from_slice(&[kind, len]);
        list.extend((0..len).map(|i| i.wrapping_mul(7)));
    }
    vec![
        ("small-frames", small.to_vec()),
        ("compressed-frame", large.to_vec()),
        ("frame-list", list),
    ]
}

fn handshake() -> Vec<u8> {
    let k = key(3);
    let mine = Offer::new(&identity(), &k, 5, 1_800_000_000_000);
    let proof = mine.prove(&k, &mine.hello);
    join_pieces(&[&mine.hello.to_bytes(), &proof.to_bytes()]).unwrap()
}

/// Request bodies as Bitcoin client libraries send them, and JSON-RPC 2.0 ones.
fn rpc_bodies() -> Vec<(&'static str, Vec<u8>)> {
    [
        (
            "legacy",
            r#"{"jsonrpc":"1.0","id":"curltest","method":"getblockhash","params":[0]}"#,
        ),
        (
            "legacy-no-id",
            r#"{"method":"getblockcount","params":[]}"#,
        ),
        (
            "v2-named",
            r#"{"jsonrpc":"2.0","id":7,"method":"getblock","params":{"blockhash":"00","verbosity":2}}"#,
        ),
        (
            "v2-notification",
            r#"{"jsonrpc":"2.0","method":"getbestblockhash"}"#,
        ),
        (
            "batch",
            r#"[{"method":"getblockcount","id":1},{"jsonrpc":"2.0","method":"gettxout","params":{"txid":"ab","n":0,"include_mempool":true},"id":null},3,{"method":"getaddressbalance","params":{"addresses":["x"]},"id":[1]}]"#,
        ),
    ]
    .into_iter()
    .map(|(l, b)| (l, b.as_bytes().to_vec()))
    .collect()
}

fn rpc_params(pay: &Transaction) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine;
    let address = timed::types::Address::from_public_key(NET, &key(1).public_key()).to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode("__cookie__:c00k1e");
    vec![
        ("address", address.clone().into_bytes()),
        (
            "address-list",
            format!(r#"{{"addresses":["{address}"]}}"#).into_bytes(),
        ),
        ("amount", b"21000000.12345678".to_vec()),
        ("amount-number", b"0.5".to_vec()),
        ("hash", pay.txid().to_hex().into_bytes()),
        ("raw-tx", hex::encode(pay.to_bytes()).into_bytes()),
        ("node", b"203.0.113.5:24000".to_vec()),
        ("ban-subnet", b"2001:db8::1/128".to_vec()),
        ("node-key", key(1).public_key().to_hex().into_bytes()),
        ("backup-name", b"nightly/../backup.dat".to_vec()),
        ("auth-header", format!("Basic {basic}").into_bytes()),
    ]
}

/// The configuration files the project ships.
fn config_files() -> Vec<(&'static str, Vec<u8>)> {
    ["localnet", "mainnet", "testnet"]
        .into_iter()
        .map(|n| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/{n}.toml"));
            (n, std::fs::read(path).unwrap())
        })
        .collect()
}

/// A genesis file as `timed localnet` writes it.
fn genesis_json() -> Vec<u8> {
    use timed::config::genesis::{GenesisAllocation, GenesisFile, GenesisMasternodeEntry};
    use timed::types::Address;
    let owner = Address::from_public_key(NET, &key(2).public_key()).to_string();
    let file = GenesisFile {
        network: NET,
        timestamp_ms: 1_000,
        block_interval_ms: 2_000,
        slot_engine_voters: None,
        allocations: vec![GenesisAllocation {
            address: owner.clone(),
            amount: "1000000.5".into(),
        }],
        masternodes: (1..=2)
            .map(|i| {
                GenesisMasternodeEntry::new(
                    timed::types::Tier::Bronze,
                    &key(i),
                    owner.clone(),
                    format!("127.0.0.1:{}", 24200 + u16::from(i)),
                )
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&file).unwrap()
}

/// A container file both ways the container targets take it: whole, and as pieces.
fn container_seeds(file: &[u8], kind: Kind) -> Vec<(&'static str, Vec<u8>)> {
    let (mut reader, header) = ContainerReader::open(file, kind).unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = reader.next_chunk().unwrap() {
        chunks.push(c);
    }
    let mut pieces = vec![header.as_slice()];
    pieces.extend(chunks.iter().map(Vec::as_slice));
    let mut raw = vec![RAW];
    raw.extend_from_slice(file);
    let mut packed = vec![PIECES];
    packed.extend(join_pieces(&pieces).unwrap());
    vec![("file", raw), ("pieces", packed)]
}

/// A backup of the test chain's database, written by the node's own writer.
fn backup_seeds(chain: &TestChain) -> Vec<(&'static str, Vec<u8>)> {
    let storage = chain.ledger.storage();
    let capture = timed::backup::dump::capture_state(storage, NET).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.dat");
    timed::backup::dump::write_backup_file(storage, capture, &path, false).unwrap();
    container_seeds(&std::fs::read(&path).unwrap(), Kind::Backup)
}

fn snapshot_seeds() -> Vec<(&'static str, Vec<u8>)> {
    container_seeds(&snapshot_file(), Kind::Snapshot)
}

/// A snapshot at height 1 of the chain the snapshot target checks against, certified by its
/// one masternode, with two outputs.
fn snapshot_file() -> Vec<u8> {
    let (genesis, set) = genesis_spec().build();
    let entries: Vec<_> = (0..2u32)
        .map(|i| {
            let utxo = UtxoEntry {
                output: TxOutput {
                    amount: Amount(1_000 + u64::from(i)),
                    key_hash: kh(&key(2)),
                },
                height: Some(1),
                coinbase: i == 0,
            };
            (OutPoint::new(Hash32([7; 32]), i), utxo, None)
        })
        .collect();
    let commitment = UtxoCommitment::of_set(entries.iter().map(|(o, e, _)| (o, e))).digest();
    let header = BlockHeader {
        version: BLOCK_VERSION,
        height: 1,
        prev_hash: genesis.hash(),
        timestamp_ms: 2_000,
        round: 0,
        proposer: key(1).public_key(),
        tx_root: Hash32::ZERO,
        witness_root: Hash32::ZERO,
        utxo_commitment: commitment,
        next_masternode_set_hash: set.hash(),
        last_commit_hash: Hash32::ZERO,
        evidence_root: Hash32::ZERO,
    };
    let hash = header.hash();
    let cert = CommitCertificate {
        height: 1,
        round: 0,
        block_hash: hash,
        precommits: vec![ConsensusVote::sign(
            &key(1),
            NET,
            VoteKind::Precommit,
            1,
            0,
            Some(hash),
        )],
    };
    let file_header = SnapshotHeader {
        network: NET,
        genesis: genesis.hash(),
        height: 1,
        best_hash: hash,
        utxo_commitment: commitment,
        outputs: entries.len() as u64,
        created_ms: 3_000,
    };
    let mut w =
        ContainerWriter::new(Vec::new(), Kind::Snapshot, &codec::encode(&file_header)).unwrap();
    let page = vec![HeaderEntry {
        header,
        cert,
        next_set: None,
    }];
    w.chunk(&codec::encode(&SnapshotChunk::Headers(page)))
        .unwrap();
    w.chunk(&codec::encode(&SnapshotChunk::Outputs(entries)))
        .unwrap();
    w.finish().unwrap().0
}
