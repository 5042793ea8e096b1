//! Building and signing transactions: what wallets, tests and the simulation make payments with.

use super::transaction::TX_VERSION;
use super::{Network, OutPoint, SecretKey, Signature, Transaction, TxInput, TxOutput, TxPayload};

/// A transfer spending `inputs`, all owned by `key`, to `outputs`, signed for `network`.
pub fn signed_transfer(
    network: Network,
    key: &SecretKey,
    inputs: &[OutPoint],
    outputs: Vec<TxOutput>,
) -> Transaction {
    signed_with_payload(network, key, inputs, outputs, TxPayload::Transfer)
}

/// Like [`signed_transfer`], with a kind-specific payload (a masternode registration).
pub fn signed_with_payload(
    network: Network,
    key: &SecretKey,
    inputs: &[OutPoint],
    outputs: Vec<TxOutput>,
    payload: TxPayload,
) -> Transaction {
    let mut tx = Transaction::new(
        TX_VERSION,
        inputs
            .iter()
            .map(|op| TxInput {
                prev_out: *op,
                public_key: key.public_key(),
                signature: Signature([0; 64]),
            })
            .collect(),
        outputs,
        payload,
    );
    sign_all(network, &mut tx, key);
    tx
}

/// Sets every input's key to `key` and signs it. The txid covers the public keys but not the
/// signatures, so the keys are set first and one signature serves every input.
pub fn sign_all(network: Network, tx: &mut Transaction, key: &SecretKey) {
    tx.forget_txid();
    for input in &mut tx.inputs {
        input.public_key = key.public_key();
    }
    let sig = key.sign(&Transaction::signing_message(network, &tx.txid()));
    for input in &mut tx.inputs {
        input.signature = sig;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Amount, Hash32};

    #[test]
    fn signed_transfer_verifies() {
        let key = SecretKey::generate();
        let tx = signed_transfer(
            Network::Localnet,
            &key,
            &[
                OutPoint::new(Hash32([1; 32]), 0),
                OutPoint::new(Hash32([2; 32]), 3),
            ],
            vec![TxOutput {
                amount: Amount(10),
                key_hash: key.public_key().key_hash(),
            }],
        );
        assert!(tx.verify_signatures(Network::Localnet).is_ok());
    }
}
