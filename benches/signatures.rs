//! Signature verification: one strict check, and batches of 64, 256 and 1024; and the BLS
//! operations a finality certificate needs (SCALING.md, step 2), with the aggregate of two
//! thirds of 1,000 masternodes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use timed::types::bls::{self, BlsSignature, ValidBlsKey};
use timed::types::signature::{verify, verify_batch, VerifyItem};
use timed::types::{BlsSecretKey, PublicKey, SecretKey, Signature};

fn signed(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
    (0..n)
        .map(|i| {
            let key = SecretKey::from_bytes(&[(i % 251) as u8 + 1; 32]);
            let msg = format!("message {i}").into_bytes();
            let sig = key.sign(&msg);
            (key.public_key(), msg, sig)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let one = signed(1);
    c.bench_function("verify/single_strict", |b| {
        b.iter(|| assert!(verify(&one[0].0, &one[0].1, &one[0].2)))
    });
    let mut group = c.benchmark_group("verify/batch");
    for n in [64usize, 256, 1024] {
        let data = signed(n);
        let items: Vec<VerifyItem> = data
            .iter()
            .map(|(pk, m, s)| VerifyItem {
                public_key: pk,
                message: m,
                signature: s,
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &items, |b, items| {
            b.iter(|| assert!(verify_batch(items).iter().all(|ok| *ok)))
        });
    }
    group.finish();
}

/// Two thirds of a 1,000-masternode set: the signers of one certificate.
const SIGNERS: usize = 667;

fn bench_bls(c: &mut Criterion) {
    let nodes: Vec<(SecretKey, BlsSecretKey)> = (0..SIGNERS)
        .map(|i| {
            let mut seed = [1u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let operator = SecretKey::from_bytes(&seed);
            let bls = BlsSecretKey::from_operator(&operator);
            (operator, bls)
        })
        .collect();
    let msg = b"lock batch 0123456789abcdef0123456789abcdef";
    let (operator, key) = &nodes[0];
    let valid = key.public_key().validate().unwrap();
    let sig = key.sign(msg);
    let pop = key.proof_of_possession(&operator.public_key());
    c.bench_function("bls/sign", |b| b.iter(|| key.sign(msg)));
    c.bench_function("bls/verify", |b| {
        b.iter(|| assert!(bls::verify(&valid, msg, &sig)))
    });
    c.bench_function("bls/verify_possession", |b| {
        b.iter(|| {
            assert!(bls::verify_possession(
                &key.public_key(),
                &operator.public_key(),
                &pop
            ))
        })
    });
    c.bench_function("bls/validate_key", |b| {
        b.iter(|| key.public_key().validate().unwrap())
    });
    let sigs: Vec<BlsSignature> = nodes.iter().map(|(_, k)| k.sign(msg)).collect();
    let keys: Vec<ValidBlsKey> = nodes
        .iter()
        .map(|(_, k)| k.public_key().validate().unwrap())
        .collect();
    let key_refs: Vec<&ValidBlsKey> = keys.iter().collect();
    let sum = bls::aggregate(&sigs).unwrap();
    let mut group = c.benchmark_group("bls/certificate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SIGNERS as u64));
    group.bench_function(BenchmarkId::new("aggregate", SIGNERS), |b| {
        b.iter(|| bls::aggregate(&sigs).unwrap())
    });
    group.bench_function(BenchmarkId::new("verify_aggregate", SIGNERS), |b| {
        b.iter(|| assert!(bls::verify_aggregate(&key_refs, msg, &sum)))
    });
    group.finish();
}

criterion_group!(benches, bench, bench_bls);
criterion_main!(benches);
