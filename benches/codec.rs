//! Encoding and decoding a 2-input, 2-output transaction.

use criterion::{criterion_group, criterion_main, Criterion};
use timed::types::transfer::signed_transfer;
use timed::types::{
    Amount, Canonical, Hash32, Network, OutPoint, SecretKey, Transaction, TxOutput,
};

fn bench(c: &mut Criterion) {
    let key = SecretKey::from_bytes(&[7; 32]);
    let tx = signed_transfer(
        Network::Localnet,
        &key,
        &[
            OutPoint::new(Hash32([1; 32]), 0),
            OutPoint::new(Hash32([2; 32]), 1),
        ],
        vec![
            TxOutput {
                amount: Amount(150_000_000),
                key_hash: key.public_key().key_hash(),
            },
            TxOutput {
                amount: Amount(49_990_000),
                key_hash: SecretKey::from_bytes(&[8; 32]).public_key().key_hash(),
            },
        ],
    );
    let bytes = tx.to_bytes();
    c.bench_function("codec/tx_2in_2out/encode", |b| b.iter(|| tx.to_bytes()));
    c.bench_function("codec/tx_2in_2out/decode", |b| {
        b.iter(|| Transaction::from_bytes(&bytes).map(|t| t.inputs.len()))
    });
    c.bench_function("codec/tx_2in_2out/txid", |b| b.iter(|| tx.txid()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
