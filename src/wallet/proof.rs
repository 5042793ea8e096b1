//! Checking a layer-1 finality proof offline (`timed wallet verify-finality`): a wallet that
//! was paid holds the proof (`gettransactionfinality`'s `certificate.slot.proof`) and the
//! masternode set that signed it (`masternodelist`), and needs no node to trust the payment.
//!
//! What is proven: a quorum of the set whose hash the certificate names signed a batch root,
//! and the txid is a leaf under that root. What the wallet must still trust is that set: its
//! hash is printed, to be compared with the `next_masternode_set_hash` of a block header the
//! wallet follows. Inside a set change's window the node also asks for a quorum of the set
//! before; a proof checked here against the set it names is signed by a quorum of that set.

use crate::consensus::finality::slots::{CertificateError, SetKeys};
use crate::consensus::masternodes::{Masternode, MasternodeSet};
use crate::types::slot::SlotFinalityProof;
use crate::types::{
    Address, BlsPublicKey, Canonical, Hash32, Network, OutPoint, PublicKey, Tier, Txid,
};
use serde_json::Value;

/// Largest proof or masternode list read (a thousand masternodes list in ≈ 600 kB).
pub const MAX_INPUT_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("the proof is not hex, nor JSON holding certificate.slot.proof (what gettransactionfinality prints under the slot engine){0}")]
    NoProof(String),
    #[error("the proof does not decode: {0}")]
    Undecodable(String),
    #[error("the masternode list is not what masternodelist prints: {0}")]
    BadList(String),
    #[error("the masternode list's addresses belong to no network{0}")]
    UnknownNetwork(String),
    #[error("the txid's path does not lead to the certified root: the proof is not for {0}")]
    PathBroken(Txid),
    #[error(
        "the certificate names set {named}, the list given is set {given}: pass the list of the \
         set it names (masternodelist at a height where that set ruled)"
    )]
    OtherSet { named: Hash32, given: Hash32 },
    #[error("the certificate does not hold against the set: {0}")]
    Certificate(#[from] CertificateError),
}

/// A proof that held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub txid: Txid,
    pub slot: u64,
    pub set_hash: Hash32,
    pub signers: usize,
    pub signer_weight: u64,
    pub total_weight: u64,
    pub network: Network,
}

/// Reads a proof from `text`: its hex, or the JSON `gettransactionfinality` printed.
pub fn parse_proof(text: &str) -> Result<SlotFinalityProof, ProofError> {
    let text = text.trim();
    let hex_text = match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => v
            .pointer("/certificate/slot/proof")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                let why = match v.get("state").and_then(Value::as_str) {
                    Some("pending") => ": the transaction is not final yet",
                    Some("confirmed") => {
                        ": the transaction is in a block already (its block's commit is the \
                         proof now; layer-1 proofs are kept until then)"
                    }
                    Some(_) => {
                        ": no slot certificate (made final by the all-to-all engine, whose \
                         proof is its vote batches)"
                    }
                    None => "",
                };
                ProofError::NoProof(why.to_string())
            })?,
        _ => text.to_string(),
    };
    let bytes = hex::decode(hex_text.trim()).map_err(|_| ProofError::NoProof(String::new()))?;
    SlotFinalityProof::from_bytes(&bytes).map_err(|e| ProofError::Undecodable(e.to_string()))
}

/// Reads the set from the JSON `masternodelist` printed, and the networks it may be of: the
/// one `network` says, or those its addresses fit (testnet and localnet share a prefix; the
/// signature, bound to its network, tells them apart in [`verify`]).
pub fn parse_set(
    text: &str,
    network: Option<Network>,
) -> Result<(MasternodeSet, Vec<Network>), ProofError> {
    let bad = |i: usize, field: &str| ProofError::BadList(format!("entry {i}: no valid {field}"));
    let list: Vec<Value> =
        serde_json::from_str(text).map_err(|e| ProofError::BadList(e.to_string()))?;
    let mut members = Vec::with_capacity(list.len());
    let mut networks: Vec<Network> = network.map_or_else(|| Network::ALL.to_vec(), |n| vec![n]);
    for (i, m) in list.iter().enumerate() {
        let text_of = |field: &str| m.get(field).and_then(Value::as_str);
        let operator_key = text_of("operator_key")
            .and_then(PublicKey::from_hex)
            .ok_or_else(|| bad(i, "operator_key"))?;
        let tier: Tier = text_of("tier")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad(i, "tier"))?;
        let txid = m
            .pointer("/collateral/txid")
            .and_then(Value::as_str)
            .and_then(|t| Hash32::from_hex(t).ok())
            .ok_or_else(|| bad(i, "collateral.txid"))?;
        let vout = m
            .pointer("/collateral/vout")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad(i, "collateral.vout"))?;
        let bls_key = text_of("bls_key")
            .and_then(BlsPublicKey::from_hex)
            .ok_or_else(|| bad(i, "bls_key"))?;
        let p2p_addr = text_of("p2p_addr").ok_or_else(|| bad(i, "p2p_addr"))?;
        let registered_height = m
            .get("registered_height")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(i, "registered_height"))?;
        if let Some(address) = text_of("address") {
            networks.retain(|n| Address::parse(address, *n).is_ok());
        }
        members.push(Masternode {
            operator_key,
            tier,
            collateral: OutPoint::new(txid, vout),
            p2p_addr: p2p_addr.to_string(),
            bls_key,
            registered_height,
        });
    }
    if members.is_empty() {
        return Err(ProofError::BadList("it lists no masternode".into()));
    }
    if networks.is_empty() {
        return Err(ProofError::UnknownNetwork(
            network.map_or_else(String::new, |n| format!(" (--network {n})")),
        ));
    }
    // The set's hash covers its members only, not the height.
    Ok((MasternodeSet::new(0, members), networks))
}

/// Checks `proof` against `set` on the first of `networks` under which it holds.
pub fn verify(
    proof: &SlotFinalityProof,
    set: &MasternodeSet,
    networks: &[Network],
) -> Result<Verified, ProofError> {
    if !proof.path_holds() {
        return Err(ProofError::PathBroken(proof.txid));
    }
    let keys = SetKeys::of(set, None);
    let certificate = &proof.certificate;
    if certificate.set_hash != keys.set_hash() {
        return Err(ProofError::OtherSet {
            named: certificate.set_hash,
            given: keys.set_hash(),
        });
    }
    let mut held = Err(ProofError::UnknownNetwork(String::new()));
    for network in networks {
        held = keys
            .check(certificate, *network)
            .map(|()| *network)
            .map_err(ProofError::from);
        if held.is_ok() {
            break;
        }
    }
    let network = held?;
    let signer_weight = certificate
        .signer_positions()
        .filter_map(|p| keys.voter(p))
        .map(|v| v.weight)
        .sum();
    Ok(Verified {
        txid: proof.txid,
        slot: certificate.slot,
        set_hash: certificate.set_hash,
        signers: certificate.signer_positions().count(),
        signer_weight,
        total_weight: keys.total_weight(),
        network,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finality_answer_without_a_proof_says_why() {
        let pending = r#"{"state": "pending", "certificate": null}"#;
        let err = parse_proof(pending).unwrap_err().to_string();
        assert!(err.contains("not final yet"), "{err}");
        let confirmed = r#"{"state": "confirmed", "certificate": null}"#;
        let err = parse_proof(confirmed).unwrap_err().to_string();
        assert!(err.contains("in a block already"), "{err}");
        let votes = r#"{"state": "final", "certificate": {"batches": []}}"#;
        let err = parse_proof(votes).unwrap_err().to_string();
        assert!(err.contains("all-to-all"), "{err}");
        let err = parse_proof("zz").unwrap_err().to_string();
        assert!(err.contains("not hex"), "{err}");
        assert!(matches!(
            parse_proof("00ff").unwrap_err(),
            ProofError::Undecodable(_)
        ));
    }

    #[test]
    fn a_masternode_list_names_the_bad_entry() {
        let err = parse_set(r#"[{"operator_key": "zz"}]"#, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 0: no valid operator_key"), "{err}");
        let err = parse_set("[]", None).unwrap_err().to_string();
        assert!(err.contains("no masternode"), "{err}");
        assert!(matches!(
            parse_set("{", None).unwrap_err(),
            ProofError::BadList(_)
        ));
    }
}
