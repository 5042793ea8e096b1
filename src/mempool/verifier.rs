//! Signature verification off the async runtime.
//!
//! Checking signatures costs tens of microseconds each; a batch of a thousand would stall a
//! tokio worker for tens of milliseconds. Async code hands whole batches to tokio's blocking
//! pool through this function instead of calling [`Mempool::verify_many`] inline.

use super::{Mempool, Result, VerifiedTx};
use crate::types::{Network, Transaction};

#[derive(Debug, thiserror::Error)]
#[error("signature verification task failed: {0}")]
pub struct VerifierGone(#[from] tokio::task::JoinError);

/// Verifies `txs` on the blocking pool; one verdict per transaction, in order.
pub async fn verify_off_runtime(
    network: Network,
    txs: Vec<Transaction>,
) -> std::result::Result<Vec<Result<VerifiedTx>>, VerifierGone> {
    Ok(tokio::task::spawn_blocking(move || Mempool::verify_many(network, txs)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::transfer::signed_transfer;
    use crate::types::{Amount, Hash32, OutPoint, SecretKey, TxOutput};

    #[tokio::test]
    async fn verifies_on_the_blocking_pool() {
        let key = SecretKey::generate();
        let good = signed_transfer(
            Network::Localnet,
            &key,
            &[OutPoint::new(Hash32([1; 32]), 0)],
            vec![TxOutput {
                amount: Amount(5),
                key_hash: key.public_key().key_hash(),
            }],
        );
        let mut bad = good.clone();
        bad.inputs[0].signature.0[0] ^= 1;
        let verdicts = verify_off_runtime(Network::Localnet, vec![good, bad])
            .await
            .unwrap();
        assert!(verdicts[0].is_ok());
        assert!(verdicts[1].as_ref().is_err_and(|e| e.is_peer_fault()));
    }
}
