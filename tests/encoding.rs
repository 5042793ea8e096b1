//! The canonical encoding: golden byte vectors that pin the bytes and ids of a transaction, a
//! block header (with its witness and evidence roots), a vote batch and a piece of
//! equivocation evidence, and property tests for round trips and hostile bytes.

use proptest::prelude::*;
use timed::types::block::BLOCK_VERSION;
use timed::types::codec::MAX_TX_BYTES;
use timed::types::transaction::TX_VERSION;
use timed::types::{
    Amount, Block, BlockHeader, BlsPublicKey, BlsSignature, Canonical, CodecError,
    CommitCertificate, ConsensusVote, Evidence, Hash32, KeyHash, MasternodeRegistration, Network,
    OutPoint, PublicKey, SecretKey, Signature, Tier, Transaction, TxInput, TxOutput, TxPayload,
    VoteBatch, VoteKind,
};

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes(&[n; 32])
}

/// A fixed 2-input, 2-output transfer signed by key 1 (ed25519 signing is deterministic).
fn golden_tx() -> Transaction {
    let k = key(1);
    let mut tx = Transaction::new(
        TX_VERSION,
        vec![
            TxInput {
                prev_out: OutPoint::new(Hash32([0x11; 32]), 0),
                public_key: k.public_key(),
                signature: Signature([0; 64]),
            },
            TxInput {
                prev_out: OutPoint::new(Hash32([0x22; 32]), 7),
                public_key: k.public_key(),
                signature: Signature([0; 64]),
            },
        ],
        vec![
            TxOutput {
                amount: Amount(150_000_000),
                key_hash: key(2).public_key().key_hash(),
            },
            TxOutput {
                amount: Amount(49_990_000),
                key_hash: k.public_key().key_hash(),
            },
        ],
        TxPayload::Transfer,
    );
    let sig = k.sign(&Transaction::signing_message(Network::Localnet, &tx.txid()));
    for i in &mut tx.inputs {
        i.signature = sig;
    }
    tx
}

fn golden_header() -> BlockHeader {
    BlockHeader {
        version: BLOCK_VERSION,
        height: 42,
        prev_hash: Hash32([0x33; 32]),
        timestamp_ms: 1_700_000_000_123,
        round: 2,
        proposer: key(3).public_key(),
        tx_root: Hash32([0x44; 32]),
        witness_root: Hash32([0x45; 32]),
        utxo_commitment: Hash32([0x55; 32]),
        next_masternode_set_hash: Hash32([0x66; 32]),
        last_commit_hash: Hash32([0x77; 32]),
        evidence_root: Hash32([0x78; 32]),
    }
}

/// Two prevotes of key 5 at height 42 round 2: one for a block, one for nil.
fn golden_evidence() -> Evidence {
    let n = Network::Localnet;
    Evidence::layer2(
        ConsensusVote::sign(
            &key(5),
            n,
            VoteKind::Prevote,
            42,
            2,
            Some(Hash32([0xaa; 32])),
        ),
        ConsensusVote::sign(&key(5), n, VoteKind::Prevote, 42, 2, None),
    )
}

/// A registration of key 3's node, its one input signed by key 1 (BLS signing is
/// deterministic too, so the BLS key and its proof of possession are fixed bytes).
fn golden_registration() -> Transaction {
    let owner = key(1);
    let operator = key(3);
    let mut tx = Transaction::new(
        TX_VERSION,
        vec![TxInput {
            prev_out: OutPoint::new(Hash32([0x55; 32]), 1),
            public_key: owner.public_key(),
            signature: Signature([0; 64]),
        }],
        vec![TxOutput {
            amount: Amount(99_990_000),
            key_hash: owner.public_key().key_hash(),
        }],
        TxPayload::from(MasternodeRegistration::new(
            Tier::Silver,
            OutPoint::new(Hash32([0x66; 32]), 0),
            &operator,
            "203.0.113.9:24000".into(),
        )),
    );
    tx.inputs[0].signature =
        owner.sign(&Transaction::signing_message(Network::Localnet, &tx.txid()));
    tx.sign_operator(Network::Localnet, &operator);
    tx
}

fn golden_batch() -> VoteBatch {
    VoteBatch::sign(
        &key(4),
        Network::Localnet,
        (41, Hash32([0x77; 32])),
        9,
        vec![Hash32([0x88; 32]), Hash32([0x99; 32])],
    )
}

// Changing any of these means every node disagrees with every older one about ids and
// signatures: only ever on purpose, with a new protocol version.
const GOLDEN_TX_HEX: &str = "01021111111111111111111111111111111111111111111111111111111111111111008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c077dc8349261c952e01f8cd07e4d674f318ed85baa6221a627f2e915f0b60d73664ee2357cdcff43046f5d01aa4ca2325e0e412496c9688abd196b906282ae0c2222222222222222222222222222222222222222222222222222222222222222078a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c077dc8349261c952e01f8cd07e4d674f318ed85baa6221a627f2e915f0b60d73664ee2357cdcff43046f5d01aa4ca2325e0e412496c9688abd196b906282ae0c02fc80d1f00835cb8491fc778fb83515fe92183ecabf0199dc27fc70c9fa0278bc2483d65b7c6365c460b5a7d85734565ff30800";
const GOLDEN_TXID: &str = "bf4cbc72901d9dcceac938cf11028857ee17c671ff522f122dd782330ca40484";
const GOLDEN_REGISTRATION_HEX: &str = "01015555555555555555555555555555555555555555555555555555555555555555018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c6ad68a7fb6d3c3cad48a53fb92c14c661962cb204895588f078c1aae05a1e68f7077c092060f3880034c727edc18007c31531bb217fd93498f18a7f9e1348c0a01fcf0b9f50578bc2483d65b7c6365c460b5a7d85734565ff3080202666666666666666666666666666666666666666666666666666666666666666600ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1113230332e302e3131332e393a32343030308474cf245d97bbd7b70d2f85a29ea0016044d6f94703dcedd35a66ccea153465c8208f299c682f02c2004ae54a00468cb0006ae1c5b204da1eb9992157e4f227cc4e6875c67cccd893c03e718b96540b138689d2a2081a15b9880afe885e3c490be679e7571b3d7db89e232de74f331c4e271ea557a11ec70f4eb4d6ae90ff6b6876f1be7757d2a4ee8e967bfa30520a9dd9b8da9f3983cf996633f7b047d42613b420d5436ad62833924f71eae53e36b93c0f78ef7795ee83d4e714f12ab27f127ee684b564358a9e3cee39123d3504";
const GOLDEN_REGISTRATION_TXID: &str =
    "ec2b38a28f22105a2b6abb5e52108bb6cb726e191d19c1b24757570ac6310e59";
const GOLDEN_HEADER_HEX: &str = "012a3333333333333333333333333333333333333333333333333333333333333333fd7b68e5cf8b01000002ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1444444444444444444444444444444444444444444444444444444444444444445454545454545454545454545454545454545454545454545454545454545455555555555555555555555555555555555555555555555555555555555555555666666666666666666666666666666666666666666666666666666666666666677777777777777777777777777777777777777777777777777777777777777777878787878787878787878787878787878787878787878787878787878787878";
const GOLDEN_HEADER_HASH: &str = "3d58dab4a00b0540d539b9426728479775550f0f735a7d8bc1f9b7f01405de1f";
const GOLDEN_BATCH_HEX: &str = "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c2977777777777777777777777777777777777777777777777777777777777777770902888888888888888888888888888888888888888888888888888888888888888899999999999999999999999999999999999999999999999999999999999999994cbf51371c37bc47bcb624347af5be5eb202ef1d0ae0a3df801cf084cdb260a8118edeb14bd68934f909ac51843284d6f22d3651165ab0f638b77d898d420800";
const GOLDEN_BATCH_ID: &str = "3cdfec34ca529f42ec802741597a428430f56ddca405ce266aa4e98a76c152f9";
const GOLDEN_EVIDENCE_HEX: &str = "00002a0201aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa6e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf16263e10c129d755cc205200202ed056c79807ebc06bda145298ebf4aaf1547c7c48a6dabaac6c4211ce09d21a723ee47c1cc3b086f3b2087c2a6f9016a2ea609002a02006e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf169755e401200abbf006b1bd023d995cc0b974e0840ce1f5dacc2464884fccd1fc4a1a61923b11f667cf9decf87af7784e5f6b2c5b5fd30385174ea366a667a08";
const GOLDEN_EVIDENCE_ID: &str = "b3147ad2645168380c9a262e691bef6c3eb10771ccf746daa5da855817cc13c1";

#[test]
fn golden_vectors_pin_the_encoding() {
    if std::env::var_os("TIMED_PRINT_GOLDEN").is_some() {
        println!("GOLDEN_TX_HEX={}", hex::encode(golden_tx().to_bytes()));
        println!("GOLDEN_TXID={}", golden_tx().txid());
        println!(
            "GOLDEN_REGISTRATION_HEX={}",
            hex::encode(golden_registration().to_bytes())
        );
        println!("GOLDEN_REGISTRATION_TXID={}", golden_registration().txid());
        println!(
            "GOLDEN_HEADER_HEX={}",
            hex::encode(golden_header().to_bytes())
        );
        println!("GOLDEN_HEADER_HASH={}", golden_header().hash());
        println!(
            "GOLDEN_BATCH_HEX={}",
            hex::encode(golden_batch().to_bytes())
        );
        println!("GOLDEN_BATCH_ID={}", golden_batch().id());
        println!(
            "GOLDEN_EVIDENCE_HEX={}",
            hex::encode(golden_evidence().to_bytes())
        );
        println!("GOLDEN_EVIDENCE_ID={}", golden_evidence().id());
    }
    assert_eq!(hex::encode(golden_tx().to_bytes()), GOLDEN_TX_HEX);
    assert_eq!(golden_tx().txid().to_hex(), GOLDEN_TXID);
    assert_eq!(
        hex::encode(golden_registration().to_bytes()),
        GOLDEN_REGISTRATION_HEX
    );
    assert_eq!(
        golden_registration().txid().to_hex(),
        GOLDEN_REGISTRATION_TXID
    );
    assert!(golden_registration()
        .verify_signatures(Network::Localnet)
        .is_ok());
    assert_eq!(hex::encode(golden_header().to_bytes()), GOLDEN_HEADER_HEX);
    assert_eq!(golden_header().hash().to_hex(), GOLDEN_HEADER_HASH);
    assert_eq!(hex::encode(golden_batch().to_bytes()), GOLDEN_BATCH_HEX);
    assert_eq!(golden_batch().id().to_hex(), GOLDEN_BATCH_ID);
    assert!(golden_batch().verify(Network::Localnet));
    assert!(golden_tx().verify_signatures(Network::Localnet).is_ok());
    assert_eq!(
        hex::encode(golden_evidence().to_bytes()),
        GOLDEN_EVIDENCE_HEX
    );
    assert_eq!(golden_evidence().id().to_hex(), GOLDEN_EVIDENCE_ID);
    assert!(golden_evidence().check_conflict().is_ok());
}

// ---- strategies ----------------------------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn pubkey() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

fn outpoint() -> impl Strategy<Value = OutPoint> {
    (hash(), any::<u32>()).prop_map(|(h, i)| OutPoint::new(h, i))
}

fn payload() -> impl Strategy<Value = TxPayload> {
    prop_oneof![
        Just(TxPayload::Transfer),
        any::<u64>().prop_map(|height| TxPayload::Coinbase { height }),
        (
            outpoint(),
            pubkey(),
            "[a-z0-9.:]{0,40}",
            0u8..4,
            signature(),
            prop::collection::vec(any::<u8>(), 48 + 96),
        )
            .prop_map(|(c, k, a, t, s, bls)| {
                let mut bls_key = [0u8; 48];
                let mut bls_pop = [0u8; 96];
                bls_key.copy_from_slice(&bls[..48]);
                bls_pop.copy_from_slice(&bls[48..]);
                TxPayload::from(MasternodeRegistration {
                    tier: [Tier::Free, Tier::Bronze, Tier::Silver, Tier::Gold][t as usize],
                    collateral: c,
                    operator_key: k,
                    p2p_addr: a,
                    bls_key: BlsPublicKey(bls_key),
                    bls_pop: BlsSignature(bls_pop),
                    operator_signature: s,
                })
            }),
    ]
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<u32>(),
        prop::collection::vec(
            (outpoint(), pubkey(), signature()).prop_map(|(prev_out, public_key, signature)| {
                TxInput {
                    prev_out,
                    public_key,
                    signature,
                }
            }),
            0..4,
        ),
        prop::collection::vec(
            (any::<u64>(), any::<[u8; 20]>()).prop_map(|(a, k)| TxOutput {
                amount: Amount(a),
                key_hash: KeyHash(k),
            }),
            0..4,
        ),
        payload(),
    )
        .prop_map(|(version, inputs, outputs, payload)| {
            Transaction::new(version, inputs, outputs, payload)
        })
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        (
            any::<u32>(),
            any::<u64>(),
            hash(),
            any::<u64>(),
            any::<u32>(),
        ),
        (pubkey(), hash(), hash(), hash(), hash(), hash(), hash()),
    )
        .prop_map(
            |((version, height, prev_hash, timestamp_ms, round), (proposer, a, w, b, c, d, e))| {
                BlockHeader {
                    version,
                    height,
                    prev_hash,
                    timestamp_ms,
                    round,
                    proposer,
                    tx_root: a,
                    witness_root: w,
                    utxo_commitment: b,
                    next_masternode_set_hash: c,
                    last_commit_hash: d,
                    evidence_root: e,
                }
            },
        )
}

fn vote() -> impl Strategy<Value = ConsensusVote> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u32>(),
        proptest::option::of(hash()),
        pubkey(),
        signature(),
    )
        .prop_map(
            |(pre, height, round, block_hash, validator, signature)| ConsensusVote {
                kind: if pre {
                    VoteKind::Prevote
                } else {
                    VoteKind::Precommit
                },
                height,
                round,
                block_hash,
                validator,
                signature,
            },
        )
}

fn certificate() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<u64>(),
        any::<u32>(),
        hash(),
        prop::collection::vec(vote(), 0..4),
    )
        .prop_map(
            |(height, round, block_hash, precommits)| CommitCertificate {
                height,
                round,
                block_hash,
                precommits,
            },
        )
}

fn batch() -> impl Strategy<Value = VoteBatch> {
    (
        pubkey(),
        any::<u64>(),
        hash(),
        any::<u64>(),
        prop::collection::vec(hash(), 0..8),
        signature(),
    )
        .prop_map(
            |(voter, set_height, set_hash, sequence, txids, signature)| VoteBatch {
                voter,
                set_height,
                set_hash,
                sequence,
                txids,
                signature,
            },
        )
}

fn evidence() -> impl Strategy<Value = Evidence> {
    prop_oneof![
        (vote(), vote()).prop_map(|(a, b)| Evidence::Layer2 { a, b }),
        (
            outpoint(),
            (batch(), transaction()),
            (batch(), transaction())
        )
            .prop_map(|(outpoint, first, second)| Evidence::Layer1 {
                outpoint,
                first,
                second
            }),
    ]
}

fn block() -> impl Strategy<Value = Block> {
    (
        header(),
        proptest::option::of(certificate()),
        prop::collection::vec(transaction(), 0..3),
        prop::collection::vec(evidence(), 0..2),
    )
        .prop_map(|(header, last_commit, transactions, evidence)| Block {
            header,
            last_commit,
            transactions: transactions.into_iter().map(std::sync::Arc::new).collect(),
            evidence,
        })
}

/// Every proper prefix fails, an extra byte fails with `TrailingBytes`, and the counted
/// length is the encoding's.
fn check_strict<T: Canonical + bincode::Encode + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = value.to_bytes();
    prop_assert_eq!(&T::from_bytes(&bytes).unwrap(), value);
    // Sizes are counted without encoding (block and transaction size limits use this).
    prop_assert_eq!(timed::types::codec::encoded_len(value), bytes.len());
    for cut in 0..bytes.len() {
        prop_assert!(
            T::from_bytes(&bytes[..cut]).is_err(),
            "prefix of {} bytes decoded",
            cut
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let trailing = matches!(
        T::from_bytes(&longer),
        Err(CodecError::TrailingBytes { extra: 1, .. })
    );
    prop_assert!(trailing, "an extra byte must be refused as trailing");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn transactions_round_trip_strictly(tx in transaction()) {
        check_strict(&tx)?;
    }

    #[test]
    fn headers_round_trip_strictly(h in header()) {
        check_strict(&h)?;
    }

    #[test]
    fn blocks_round_trip_strictly(b in block()) {
        check_strict(&b)?;
    }

    #[test]
    fn evidence_round_trips_strictly(e in evidence()) {
        check_strict(&e)?;
    }

    #[test]
    fn vote_batches_round_trip_strictly(b in batch()) {
        check_strict(&b)?;
    }

    #[test]
    fn consensus_votes_and_certificates_round_trip_strictly(v in vote(), c in certificate()) {
        check_strict(&v)?;
        check_strict(&c)?;
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Transaction::from_bytes(&bytes);
        let _ = Block::from_bytes(&bytes);
        let _ = BlockHeader::from_bytes(&bytes);
        let _ = VoteBatch::from_bytes(&bytes);
        let _ = ConsensusVote::from_bytes(&bytes);
        let _ = CommitCertificate::from_bytes(&bytes);
    }

    /// A decoded value always re-encodes to the very bytes it came from.
    #[test]
    fn whatever_decodes_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(tx) = Transaction::from_bytes(&bytes) {
            prop_assert_eq!(tx.to_bytes(), bytes);
        }
    }
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_TX_BYTES + 1];
    assert!(matches!(
        Transaction::from_bytes(&bytes),
        Err(CodecError::TooLarge { len, max, .. }) if len == MAX_TX_BYTES + 1 && max == MAX_TX_BYTES
    ));
}

#[test]
fn a_huge_claimed_length_is_refused() {
    // Version 1, then an input count of 2^32 (0xfd marker and a u64): far past the size limit,
    // which bounds what the decoder may reserve, so it refuses instead of allocating.
    let bytes = [0x01, 0xfd, 0, 0, 0, 0, 1, 0, 0, 0];
    assert!(Transaction::from_bytes(&bytes).is_err());
}

#[test]
fn non_minimal_varints_are_refused() {
    let tx = golden_tx();
    let bytes = tx.to_bytes();
    // bytes[0] is the version (1); bytes[1] the input count (2). Re-encode the count with the
    // 0xfb (u16) marker: same number, different bytes.
    assert_eq!(bytes[1], 2);
    let mut padded = vec![bytes[0], 0xfb, 2, 0];
    padded.extend_from_slice(&bytes[2..]);
    assert!(matches!(
        Transaction::from_bytes(&padded),
        Err(CodecError::NonCanonical { .. }) | Err(CodecError::Malformed { .. })
    ));
}

/// The slot engine's wire messages (stop 33): an announcement, a BLS share and the
/// certificate of three shares, all from fixed keys (ed25519 and BLS signing are
/// deterministic). `TIMED_PRINT_GOLDEN=1` prints them after a deliberate format change.
fn golden_slot_messages() -> (
    timed::types::slot::BatchAnnouncement,
    timed::types::slot::SlotShare,
    timed::types::slot::SlotCertificate,
) {
    use timed::types::slot::{
        batch_root, share_message, BatchAnnouncement, SlotCertificate, SlotShare,
    };
    use timed::types::{bls, BlsSecretKey};
    let set_hash = Hash32([0x5e; 32]);
    let txids = vec![Hash32([0xa1; 32]), Hash32([0xa2; 32]), Hash32([0xa3; 32])];
    let root = batch_root(&txids);
    let operators: Vec<SecretKey> = (1u8..=3).map(|i| SecretKey::from_bytes(&[i; 32])).collect();
    let announcement =
        BatchAnnouncement::sign(&operators[0], Network::Localnet, set_hash, (17, 0), txids);
    let message = share_message(Network::Localnet, &set_hash, 17, &root);
    let signatures: Vec<timed::types::BlsSignature> = operators
        .iter()
        .map(|op| BlsSecretKey::from_operator(op).sign(&message))
        .collect();
    let share = SlotShare {
        set_hash,
        slot: 17,
        root,
        voter: operators[1].public_key(),
        signature: signatures[1],
    };
    let certificate = SlotCertificate {
        set_hash,
        slot: 17,
        root,
        signers: SlotCertificate::bitmap(4, [0, 1, 2]),
        aggregate: bls::aggregate(&signatures).expect("three valid signatures add up"),
    };
    (announcement, share, certificate)
}

const GOLDEN_ANNOUNCEMENT_HEX: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e11008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c03a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3d1653a5187c110bc361505dbbb25cbf4421bcc68cfc6ff7ffddee2376f7c4940acc789bccd50fd10f6c9b5bc45dffb20a6f0785c8f928d740c147a1bd569f00f";
const GOLDEN_SHARE_HEX: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e11edd84741e0b9ec4346f9bf882017a33f95333914e4b6e623bfb577a0187bcf7e8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39484b8cf7a735056c89fca612e44d30517ff204c7b2285b37eccfa2bf15c3294b6c0dfade833c4fbf86a2c56c19b070ed015a177dfde9d8f15c9da361f2efa8b3df3cf58a59ef1e8f6a040be0556f0299aeb09f08cc25da07fb47737c7d378f76e";
const GOLDEN_CERTIFICATE_HEX: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e11edd84741e0b9ec4346f9bf882017a33f95333914e4b6e623bfb577a0187bcf7e0107a9d3740c77cde6bd913fb1069545b12829c45f773032fd090e45fbbc20fe0ff03b84126864a119cb0a3903b5175695c60e8f9697c1d7690b2453e865420fa2e0bc2285c88a2e2a9d77c12ef66a2c3e4c6533a8740d734d39c05cfc48c92e1413";

#[test]
fn golden_slot_messages_pin_their_encoding() {
    let (announcement, share, certificate) = golden_slot_messages();
    if std::env::var_os("TIMED_PRINT_GOLDEN").is_some() {
        println!(
            "GOLDEN_ANNOUNCEMENT_HEX={}",
            hex::encode(announcement.to_bytes())
        );
        println!("GOLDEN_SHARE_HEX={}", hex::encode(share.to_bytes()));
        println!(
            "GOLDEN_CERTIFICATE_HEX={}",
            hex::encode(certificate.to_bytes())
        );
    }
    assert!(announcement.verify(Network::Localnet));
    assert_eq!(
        hex::encode(announcement.to_bytes()),
        GOLDEN_ANNOUNCEMENT_HEX
    );
    assert_eq!(hex::encode(share.to_bytes()), GOLDEN_SHARE_HEX);
    assert_eq!(hex::encode(certificate.to_bytes()), GOLDEN_CERTIFICATE_HEX);
}
