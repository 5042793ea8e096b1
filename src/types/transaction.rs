//! Transactions: outpoints, inputs, outputs, payloads, ids and the stateless rules.
//!
//! The txid hashes everything except the signatures (the inputs' and a registration's operator
//! signature), so nobody can change a transaction's id by re-encoding or re-signing it. Every
//! input signs `network id || txid`, and so does a registration's operator key. A
//! registration's BLS key and proof of possession are in the txid: the operator signs them.

use super::amount::Amount;
use super::bls::{self, BlsPublicKey, BlsSignature};
use super::codec::{self, MAX_TX_BYTES};
use super::hash::{tag, Hash32};
use super::keys::{KeyHash, PublicKey, SecretKey, Signature};
use super::masternode::{MasternodeRegistration, Tier, MAX_P2P_ADDR_LEN};
use super::network::Network;
use super::signature::VerifyItem;
use bincode::{Decode, Encode};
use std::collections::HashSet;
use std::fmt;

/// The only transaction version this node knows.
pub const TX_VERSION: u32 = 1;
/// Upper bounds that also keep a hostile transaction's verification cost small.
pub const MAX_TX_INPUTS: usize = 1_000;
pub const MAX_TX_OUTPUTS: usize = 1_000;

pub type Txid = Hash32;

/// A reference to one output of an earlier transaction.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct OutPoint {
    pub txid: Txid,
    pub index: u32,
}

impl OutPoint {
    pub fn new(txid: Txid, index: u32) -> OutPoint {
        OutPoint { txid, index }
    }

    /// Fixed-width key bytes (txid then big-endian index), so outputs of one transaction sort
    /// together in the database.
    pub fn to_key(&self) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&self.txid.0);
        k[32..].copy_from_slice(&self.index.to_be_bytes());
        k
    }

    pub fn from_key(bytes: &[u8]) -> Option<OutPoint> {
        if bytes.len() != 36 {
            return None;
        }
        let mut txid = [0u8; 32];
        txid.copy_from_slice(&bytes[..32]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&bytes[32..]);
        Some(OutPoint::new(Hash32(txid), u32::from_be_bytes(index)))
    }
}

impl fmt::Debug for OutPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.index)
    }
}

impl fmt::Display for OutPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.index)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TxInput {
    pub prev_out: OutPoint,
    /// The key whose hash the spent output names.
    pub public_key: PublicKey,
    pub signature: Signature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct TxOutput {
    pub amount: Amount,
    pub key_hash: KeyHash,
}

/// What kind of transaction this is, beyond moving coins.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum TxPayload {
    /// An ordinary transfer.
    Transfer,
    /// Creates new coins: the block reward (or, at height 0, the genesis allocation). The height
    /// makes every coinbase's txid unique.
    Coinbase { height: u64 },
    /// Registers a masternode. Boxed: its keys and signatures would triple the size of every
    /// transaction in memory, and registrations are rare.
    MasternodeRegistration(Box<MasternodeRegistration>),
}

impl From<MasternodeRegistration> for TxPayload {
    fn from(reg: MasternodeRegistration) -> Self {
        TxPayload::MasternodeRegistration(Box::new(reg))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Transaction {
    pub version: u32,
    pub inputs: Vec<TxInput>,
    pub outputs: Vec<TxOutput>,
    pub payload: TxPayload,
    /// The txid once taken: neither encoded nor compared, and not cloned.
    id: TxidCache,
}

/// A transaction's id, hashed at most once per copy.
///
/// A transaction is named by its txid at every step of the hot path (door, engine, ledger,
/// log, views): hashed each time, that was 4 % of a loaded localnet's CPU. The cache is
/// filled by the first [`Transaction::txid`]. It holds because the id leaves out what code
/// changes after taking it (signatures), a clone starts empty (a clone-then-edit is hashed
/// anew), and the one in-place edit of hashed fields (setting the input keys before signing)
/// calls [`Transaction::forget_txid`]. Debug builds (every test) hash again at each call and
/// stop if a transaction was changed after its id was taken without it.
#[derive(Default)]
struct TxidCache(std::sync::OnceLock<Txid>);

impl Clone for TxidCache {
    fn clone(&self) -> Self {
        TxidCache::default()
    }
}

impl PartialEq for TxidCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for TxidCache {}

impl fmt::Debug for TxidCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("_")
    }
}

impl Encode for TxidCache {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        _: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        Ok(())
    }
}

impl<C> Decode<C> for TxidCache {
    fn decode<D: bincode::de::Decoder<Context = C>>(
        _: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(TxidCache::default())
    }
}

impl<'de, C> bincode::BorrowDecode<'de, C> for TxidCache {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = C>>(
        _: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(TxidCache::default())
    }
}

crate::canonical!(Transaction, "transaction", MAX_TX_BYTES);

/// The payload as the txid sees it: a registration without its operator signature. Variants
/// and fields in the order of [`TxPayload`], so the bytes are those of the payload minus the
/// signature.
#[derive(Encode)]
enum TxidPayload<'a> {
    Transfer,
    Coinbase {
        height: u64,
    },
    MasternodeRegistration {
        tier: Tier,
        collateral: &'a OutPoint,
        operator_key: &'a PublicKey,
        p2p_addr: &'a String,
        bls_key: &'a BlsPublicKey,
        bls_pop: &'a BlsSignature,
    },
}

impl<'a> From<&'a TxPayload> for TxidPayload<'a> {
    fn from(p: &'a TxPayload) -> Self {
        match p {
            TxPayload::Transfer => TxidPayload::Transfer,
            TxPayload::Coinbase { height } => TxidPayload::Coinbase { height: *height },
            TxPayload::MasternodeRegistration(r) => TxidPayload::MasternodeRegistration {
                tier: r.tier,
                collateral: &r.collateral,
                operator_key: &r.operator_key,
                p2p_addr: &r.p2p_addr,
                bls_key: &r.bls_key,
                bls_pop: &r.bls_pop,
            },
        }
    }
}

/// Why a transaction fails the rules that need no ledger.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxError {
    #[error("transaction {txid}: unsupported version {version}")]
    BadVersion { txid: Txid, version: u32 },
    #[error("transaction {txid}: {size} bytes is larger than the limit of {max}")]
    TooLarge { txid: Txid, size: usize, max: usize },
    #[error("transaction {txid} has no inputs")]
    NoInputs { txid: Txid },
    #[error("transaction {txid} has no outputs")]
    NoOutputs { txid: Txid },
    #[error("transaction {txid} has {count} {what}, more than the limit of {max}")]
    TooMany {
        txid: Txid,
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("transaction {txid} spends {outpoint} twice")]
    DuplicateInput { txid: Txid, outpoint: OutPoint },
    #[error("transaction {txid}: output {index} has a zero amount")]
    ZeroOutput { txid: Txid, index: usize },
    #[error("transaction {txid}: output amounts overflow")]
    OutputOverflow { txid: Txid },
    #[error("transaction {txid}: a coinbase may only appear as a block's first transaction")]
    UnexpectedCoinbase { txid: Txid },
    #[error("transaction {txid}: coinbase must have no inputs")]
    CoinbaseWithInputs { txid: Txid },
    #[error("transaction {txid}: masternode p2p address is {len} bytes, limit {max}")]
    BadRegistration { txid: Txid, len: usize, max: usize },
    #[error("transaction {txid}: signature of input {index} is invalid")]
    BadSignature { txid: Txid, index: usize },
    #[error("transaction {txid}: the registration's operator signature is invalid")]
    BadOperatorSignature { txid: Txid },
    #[error(
        "transaction {txid}: the registration's BLS key is not a valid key or its proof of \
         possession does not verify"
    )]
    BadBlsPossession { txid: Txid },
    #[error("transaction {txid}: input {index}'s public key does not own the spent output")]
    WrongKey { txid: Txid, index: usize },
}

impl Transaction {
    pub fn new(
        version: u32,
        inputs: Vec<TxInput>,
        outputs: Vec<TxOutput>,
        payload: TxPayload,
    ) -> Transaction {
        Transaction {
            version,
            inputs,
            outputs,
            payload,
            id: TxidCache::default(),
        }
    }

    /// The id: the hash of the transaction without its signatures.
    ///
    /// The fields are encoded into one buffer and hashed in one call: fed to the hasher field
    /// by field (a few bytes each), the hasher's per-call work cost more than the hashing.
    ///
    /// Hashed once per copy ([`TxidCache`]).
    pub fn txid(&self) -> Txid {
        let id = *self.id.0.get_or_init(|| self.hash_id());
        debug_assert_eq!(
            id,
            self.hash_id(),
            "a transaction was changed after its txid was taken: change a clone, or call forget_txid first"
        );
        id
    }

    /// Forgets the txid taken: for code that changes this transaction in place after that
    /// (re-signing with other keys). Debug builds stop on a change made without it.
    pub fn forget_txid(&mut self) {
        self.id = TxidCache::default();
    }

    fn hash_id(&self) -> Txid {
        let mut buf = Vec::with_capacity(64 + 64 * self.inputs.len() + 32 * self.outputs.len());
        codec::encode_into(&self.version, &mut buf);
        codec::encode_into(&(self.inputs.len() as u64), &mut buf);
        for input in &self.inputs {
            codec::encode_into(&input.prev_out, &mut buf);
            codec::encode_into(&input.public_key, &mut buf);
        }
        codec::encode_into(&self.outputs, &mut buf);
        codec::encode_into(&TxidPayload::from(&self.payload), &mut buf);
        let mut h = Hash32::hasher(tag::TXID);
        h.update(&buf);
        Hash32::from_hasher(&h)
    }

    /// Every output this transaction claims at layer 1: its inputs, then a registration's
    /// collateral. Locks, conflicts and finality treat them alike (a spend of a collateral
    /// conflicts with its registration), so a registration and a spend of its collateral can
    /// never both be final, and block order can never invalidate a final registration.
    pub fn claimed_outpoints(&self) -> impl Iterator<Item = OutPoint> + '_ {
        let collateral = match &self.payload {
            TxPayload::MasternodeRegistration(reg) => Some(reg.collateral),
            _ => None,
        };
        self.inputs.iter().map(|i| i.prev_out).chain(collateral)
    }

    /// Signs a registration with its operator key (after every other field is final: the
    /// signature covers the txid). Does nothing to other transactions.
    pub fn sign_operator(&mut self, network: Network, operator: &SecretKey) {
        let msg = Self::signing_message(network, &self.txid());
        if let TxPayload::MasternodeRegistration(reg) = &mut self.payload {
            reg.operator_signature = operator.sign(&msg);
        }
    }

    /// The error for the `item`-th entry of [`verify_items`](Self::verify_items) failing.
    pub fn signature_error(&self, txid: Txid, item: usize) -> TxError {
        if item < self.inputs.len() {
            TxError::BadSignature { txid, index: item }
        } else {
            TxError::BadOperatorSignature { txid }
        }
    }

    /// The message every input signs.
    pub fn signing_message(network: Network, txid: &Txid) -> [u8; 36] {
        let mut m = [0u8; 36];
        m[..4].copy_from_slice(&network.id());
        m[4..].copy_from_slice(&txid.0);
        m
    }

    pub fn is_coinbase(&self) -> bool {
        matches!(self.payload, TxPayload::Coinbase { .. })
    }

    pub fn encoded_len(&self) -> usize {
        codec::encoded_len(self)
    }

    pub fn total_output(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|o| o.amount))
    }

    /// Rules that need no ledger and no signature check: structure, sizes, amounts.
    /// `allow_coinbase` is true only for a block's first transaction.
    pub fn check_structure(&self, allow_coinbase: bool) -> Result<(), TxError> {
        let txid = self.txid();
        if self.version != TX_VERSION {
            return Err(TxError::BadVersion {
                txid,
                version: self.version,
            });
        }
        let size = self.encoded_len();
        if size > MAX_TX_BYTES {
            return Err(TxError::TooLarge {
                txid,
                size,
                max: MAX_TX_BYTES,
            });
        }
        // A coinbase may be empty when there is nothing to pay (no reward, no fees).
        if self.outputs.is_empty() && !self.is_coinbase() {
            return Err(TxError::NoOutputs { txid });
        }
        if self.inputs.len() > MAX_TX_INPUTS {
            return Err(TxError::TooMany {
                txid,
                what: "inputs",
                count: self.inputs.len(),
                max: MAX_TX_INPUTS,
            });
        }
        if self.outputs.len() > MAX_TX_OUTPUTS {
            return Err(TxError::TooMany {
                txid,
                what: "outputs",
                count: self.outputs.len(),
                max: MAX_TX_OUTPUTS,
            });
        }
        match &self.payload {
            TxPayload::Coinbase { .. } => {
                if !allow_coinbase {
                    return Err(TxError::UnexpectedCoinbase { txid });
                }
                if !self.inputs.is_empty() {
                    return Err(TxError::CoinbaseWithInputs { txid });
                }
            }
            TxPayload::Transfer | TxPayload::MasternodeRegistration(_) => {
                if self.inputs.is_empty() {
                    return Err(TxError::NoInputs { txid });
                }
            }
        }
        if let TxPayload::MasternodeRegistration(reg) = &self.payload {
            if reg.p2p_addr.len() > MAX_P2P_ADDR_LEN {
                return Err(TxError::BadRegistration {
                    txid,
                    len: reg.p2p_addr.len(),
                    max: MAX_P2P_ADDR_LEN,
                });
            }
        }
        if let Some(outpoint) = self.duplicate_input() {
            return Err(TxError::DuplicateInput { txid, outpoint });
        }
        for (index, out) in self.outputs.iter().enumerate() {
            if out.amount == Amount::ZERO {
                return Err(TxError::ZeroOutput { txid, index });
            }
        }
        if self.total_output().is_none() {
            return Err(TxError::OutputOverflow { txid });
        }
        Ok(())
    }

    /// The outpoint of the first input that spends what an earlier one does. Most
    /// transactions have a few inputs: comparing them pairwise costs less than building a set
    /// (and names the same input the set would).
    fn duplicate_input(&self) -> Option<OutPoint> {
        const PAIRWISE_UP_TO: usize = 8;
        let inputs = &self.inputs;
        if inputs.len() <= PAIRWISE_UP_TO {
            return (1..inputs.len())
                .find(|&j| inputs[..j].iter().any(|a| a.prev_out == inputs[j].prev_out))
                .map(|j| inputs[j].prev_out);
        }
        let mut seen = HashSet::with_capacity(inputs.len());
        (inputs.iter())
            .find(|input| !seen.insert(input.prev_out))
            .map(|input| input.prev_out)
    }

    /// The signature checks this transaction needs, for single or batch verification: one per
    /// input, then a registration's operator signature. `message` must be
    /// `signing_message(network, &self.txid())`.
    pub fn verify_items<'a>(&'a self, message: &'a [u8]) -> Vec<VerifyItem<'a>> {
        let operator = match &self.payload {
            TxPayload::MasternodeRegistration(reg) => Some(VerifyItem {
                public_key: &reg.operator_key,
                message,
                signature: &reg.operator_signature,
            }),
            _ => None,
        };
        self.inputs
            .iter()
            .map(|i| VerifyItem {
                public_key: &i.public_key,
                message,
                signature: &i.signature,
            })
            .chain(operator)
            .collect()
    }

    /// A registration's BLS proof of possession (≈ 1 ms, thirty ed25519 checks: callers check
    /// it last, after the signatures and, in the pool, after the ledger's checks, so only a
    /// transaction spending real coins costs one). Other transactions have none.
    pub fn check_possession(&self, txid: Txid) -> Result<(), TxError> {
        match &self.payload {
            TxPayload::MasternodeRegistration(reg)
                if !bls::verify_possession(&reg.bls_key, &reg.operator_key, &reg.bls_pop) =>
            {
                Err(TxError::BadBlsPossession { txid })
            }
            _ => Ok(()),
        }
    }

    /// Checks every signature (batched), reporting the first bad one, then a registration's
    /// proof of possession.
    pub fn verify_signatures(&self, network: Network) -> Result<(), TxError> {
        let txid = self.txid();
        let msg = Self::signing_message(network, &txid);
        let verdicts = super::signature::verify_batch(&self.verify_items(&msg));
        match verdicts.iter().position(|ok| !ok) {
            Some(item) => Err(self.signature_error(txid, item)),
            None => self.check_possession(txid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::codec::Canonical;
    use crate::types::keys::SecretKey;

    fn sample(key: &SecretKey) -> Transaction {
        let mut tx = Transaction::new(
            TX_VERSION,
            vec![TxInput {
                prev_out: OutPoint::new(Hash32([7; 32]), 1),
                public_key: key.public_key(),
                signature: Signature([0; 64]),
            }],
            vec![TxOutput {
                amount: Amount(5),
                key_hash: KeyHash([1; 20]),
            }],
            TxPayload::Transfer,
        );
        let msg = Transaction::signing_message(Network::Localnet, &tx.txid());
        tx.inputs[0].signature = key.sign(&msg);
        tx
    }

    #[test]
    fn txid_ignores_signatures_and_signatures_bind_network() {
        let key = SecretKey::generate();
        let tx = sample(&key);
        let mut resigned = tx.clone();
        resigned.inputs[0].signature = Signature([9; 64]);
        assert_eq!(tx.txid(), resigned.txid());
        assert!(tx.verify_signatures(Network::Localnet).is_ok());
        assert_eq!(
            tx.verify_signatures(Network::Testnet),
            Err(TxError::BadSignature {
                txid: tx.txid(),
                index: 0
            })
        );
        assert_eq!(Transaction::from_bytes(&tx.to_bytes()), Ok(tx));
    }

    #[test]
    fn structure_rules() {
        let key = SecretKey::generate();
        let tx = sample(&key);
        assert!(tx.check_structure(false).is_ok());

        let mut dup = tx.clone();
        dup.inputs.push(dup.inputs[0].clone());
        assert!(matches!(
            dup.check_structure(false),
            Err(TxError::DuplicateInput { .. })
        ));
        // The first input repeating an earlier one is named: B in A, B, B, A.
        let mut abba = tx.clone();
        let (a, mut b) = (abba.inputs[0].clone(), abba.inputs[0].clone());
        b.prev_out.index += 1;
        abba.inputs = vec![a.clone(), b.clone(), b.clone(), a];
        assert_eq!(
            abba.check_structure(false),
            Err(TxError::DuplicateInput {
                txid: abba.txid(),
                outpoint: b.prev_out
            })
        );
        // Past the pairwise comparison's size: the set finds the pair, and the error names
        // the transaction's real id.
        let mut many = tx.clone();
        for i in 0..10u32 {
            let mut input = many.inputs[0].clone();
            input.prev_out.index = 1_000 + i;
            many.inputs.push(input);
        }
        assert!(many.check_structure(false).is_ok());
        let twice = many.inputs[7].prev_out;
        let mut repeated = many.clone();
        repeated.inputs.push(many.inputs[7].clone());
        assert_eq!(
            repeated.check_structure(false),
            Err(TxError::DuplicateInput {
                txid: repeated.txid(),
                outpoint: twice
            })
        );

        let mut overflow = tx.clone();
        overflow.outputs = vec![
            TxOutput {
                amount: Amount(u64::MAX),
                key_hash: KeyHash([1; 20])
            };
            2
        ];
        assert!(matches!(
            overflow.check_structure(false),
            Err(TxError::OutputOverflow { .. })
        ));

        let mut zero = tx.clone();
        zero.outputs[0].amount = Amount::ZERO;
        assert!(matches!(
            zero.check_structure(false),
            Err(TxError::ZeroOutput { .. })
        ));

        let mut cb = tx.clone();
        cb.payload = TxPayload::Coinbase { height: 1 };
        assert!(matches!(
            cb.check_structure(false),
            Err(TxError::UnexpectedCoinbase { .. })
        ));
        assert!(matches!(
            cb.check_structure(true),
            Err(TxError::CoinbaseWithInputs { .. })
        ));

        // A changed transaction is a new one: changed on a clone, which hashes anew.
        let mut none = tx.clone();
        none.inputs.clear();
        assert!(matches!(
            none.check_structure(false),
            Err(TxError::NoInputs { .. })
        ));
    }
}
