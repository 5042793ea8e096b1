//! Building transactions without a node wallet: `createrawtransaction`,
//! `signrawtransactionwithkey`, `decoderawtransaction`.
//!
//! An unsigned input carries a zero key and signature. The txid covers every input's public
//! key (not the signatures), so signing sets all keys first, then signs the one txid: all
//! inputs must be signed in one call (unlike Bitcoin, where inputs sign independently).

use super::error::*;
use super::json;
use crate::context::NodeContext;
use crate::types::transaction::TX_VERSION;
use crate::types::{
    Address, Amount, Canonical, OutPoint, PublicKey, SecretKey, Signature, Transaction, TxInput,
    TxOutput, TxPayload,
};
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most inputs or outputs `createrawtransaction` builds (the transaction size limit binds
/// earlier for big ones).
const MAX_PARTS: usize = 10_000;
/// Most keys one `signrawtransactionwithkey` call takes.
const MAX_KEYS: usize = 1_000;
/// 2^26 TIME. Below it, neighbouring doubles are less than one atom apart, so a JSON number
/// with decimals names exactly one amount; from it on, several amounts share one double
/// (2100100200.345673 would arrive as ...34567308), so such amounts must come as strings.
pub const MAX_EXACT_NUMBER_TIME: f64 = (1u64 << 26) as f64;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_method("decoderawtransaction", |p, ctx, _| {
        let text: String = p.sequence().next().map_err(invalid_param)?;
        let tx = decode_hex_tx(&text)?;
        RpcResult::Ok(json::transaction(ctx.params.network, &tx, None))
    })?;
    m.register_method("createrawtransaction", |p, ctx, _| {
        createrawtransaction(p, ctx)
    })?;
    // Blocking: a hash per key and a signature per input.
    m.register_blocking_method("signrawtransactionwithkey", |p, ctx, _| {
        signrawtransactionwithkey(p, &ctx)
    })?;
    Ok(())
}

/// Hex → transaction, with Bitcoin's -22 for anything undecodable.
pub fn decode_hex_tx(text: &str) -> RpcResult<Transaction> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| err(DESERIALIZATION_ERROR, "TX decode failed: not hexadecimal"))?;
    Transaction::from_bytes(&bytes)
        .map_err(|e| err(DESERIALIZATION_ERROR, format!("TX decode failed: {e}")))
}

/// An amount argument: a JSON number or string of decimal TIME, at most 8 decimals.
pub fn parse_amount(v: &Value) -> RpcResult<Amount> {
    let bad = |why: String| err(TYPE_ERROR, format!("Invalid amount: {why}"));
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(f)) if f.is_finite() && f >= MAX_EXACT_NUMBER_TIME => {
                return Err(bad(format!(
                    "{n} is too large for a JSON number with decimals to name one amount \
                     exactly (from {MAX_EXACT_NUMBER_TIME} TIME on): give it as a string"
                )));
            }
            (None, Some(f)) if f.is_finite() && f >= 0.0 => {
                let fixed = format!("{f:.8}");
                // More than 8 decimals does not survive the rounding above.
                if fixed.parse::<f64>().ok() != Some(f) {
                    return Err(bad(format!("{n} has more than 8 decimals")));
                }
                fixed
            }
            _ => return Err(bad(format!("{n} is negative or not a number"))),
        },
        other => return Err(bad(format!("{other} is not a number"))),
    };
    Amount::parse_decimal(&text).map_err(|e| bad(e.to_string()))
}

fn createrawtransaction(p: Params, ctx: &NodeContext) -> RpcResult<String> {
    let mut seq = p.sequence();
    let inputs: Vec<Value> = seq.next().map_err(invalid_param)?;
    let outputs: Value = seq.next().map_err(invalid_param)?;
    if inputs.len() > MAX_PARTS {
        return Err(err(
            INVALID_PARAMETER,
            format!("at most {MAX_PARTS} inputs"),
        ));
    }
    let mut tx_inputs = Vec::with_capacity(inputs.len());
    for i in &inputs {
        let txid = i["txid"]
            .as_str()
            .ok_or_else(|| err(INVALID_PARAMETER, "Invalid parameter, missing txid key"))
            .and_then(|t| super::blockchain::parse_hash("txid", t))?;
        let vout = i["vout"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                err(
                    INVALID_PARAMETER,
                    "Invalid parameter, missing vout key or vout out of range",
                )
            })?;
        tx_inputs.push(TxInput {
            prev_out: OutPoint::new(txid, vout),
            public_key: PublicKey([0; 32]),
            signature: Signature([0; 64]),
        });
    }
    // `{address: amount, ...}` or `[{address: amount}, ...]`, as bitcoind takes them.
    let pairs: Vec<(String, Value)> = match outputs {
        Value::Object(o) => o.into_iter().collect(),
        Value::Array(list) => {
            let mut pairs = Vec::new();
            for item in list {
                match item {
                    Value::Object(o) => pairs.extend(o),
                    _ => {
                        return Err(err(
                            INVALID_PARAMETER,
                            "Invalid parameter, outputs must be objects",
                        ))
                    }
                }
            }
            pairs
        }
        _ => {
            return Err(err(
                INVALID_PARAMETER,
                "Invalid parameter, outputs must be an object or an array of objects",
            ))
        }
    };
    if pairs.is_empty() || pairs.len() > MAX_PARTS {
        return Err(err(
            INVALID_PARAMETER,
            format!("Invalid parameter, give 1 to {MAX_PARTS} outputs"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut tx_outputs = Vec::with_capacity(pairs.len());
    for (addr, amount) in pairs {
        if addr == "data" {
            return Err(err(
                INVALID_PARAMETER,
                "Invalid parameter, data outputs are not supported",
            ));
        }
        let a = Address::parse(&addr, ctx.params.network).map_err(|e| {
            err(
                INVALID_ADDRESS_OR_KEY,
                format!("Invalid TimeCoin address: {e}"),
            )
        })?;
        if !seen.insert(addr.clone()) {
            return Err(err(
                INVALID_PARAMETER,
                format!("Invalid parameter, duplicated address: {addr}"),
            ));
        }
        tx_outputs.push(TxOutput {
            amount: parse_amount(&amount)?,
            key_hash: a.key_hash,
        });
    }
    let tx = Transaction::new(TX_VERSION, tx_inputs, tx_outputs, TxPayload::Transfer);
    Ok(hex::encode(tx.to_bytes()))
}

fn parse_secret(text: &str) -> RpcResult<SecretKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
        err(
            INVALID_ADDRESS_OR_KEY,
            "Invalid private key: expected 64 hex characters (a timed key file's content)",
        )
    })?;
    Ok(SecretKey::from_bytes(&bytes))
}

fn signrawtransactionwithkey(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let text: String = seq.next().map_err(invalid_param)?;
    let keys: Vec<String> = seq.next().map_err(invalid_param)?;
    if keys.len() > MAX_KEYS {
        return Err(err(INVALID_PARAMETER, format!("at most {MAX_KEYS} keys")));
    }
    let mut tx = decode_hex_tx(&text)?;
    let keys: std::collections::HashMap<crate::types::KeyHash, SecretKey> = keys
        .iter()
        .map(|k| parse_secret(k).map(|s| (s.public_key().key_hash(), s)))
        .collect::<RpcResult<_>>()?;
    // Which key owns each input: by the spent output's key hash.
    let mut owners = Vec::with_capacity(tx.inputs.len());
    let mut errors = Vec::new();
    for input in &tx.inputs {
        let op = input.prev_out;
        let owner = match ctx.ledger.utxo(&op) {
            None => {
                errors.push((op, "Input not found or already spent"));
                None
            }
            Some(rec) => {
                let k = keys.get(&rec.entry.output.key_hash);
                if k.is_none() {
                    errors.push((op, "No key given for the address that owns this input"));
                }
                k
            }
        };
        owners.push(owner);
    }
    let complete = errors.is_empty();
    if complete {
        tx.forget_txid();
        for (input, key) in tx.inputs.iter_mut().zip(&owners) {
            if let Some(k) = key {
                input.public_key = k.public_key();
            }
        }
        let message = Transaction::signing_message(ctx.params.network, &tx.txid());
        for (input, key) in tx.inputs.iter_mut().zip(&owners) {
            if let Some(k) = key {
                input.signature = k.sign(&message);
            }
        }
    }
    let mut out = json!({ "hex": hex::encode(tx.to_bytes()), "complete": complete });
    if !complete {
        out["errors"] = json!(errors
            .iter()
            .map(|(op, why)| json!({
                "txid": op.txid.to_hex(),
                "vout": op.index,
                "error": why,
            }))
            .collect::<Vec<_>>());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_take_numbers_and_strings_with_at_most_eight_decimals() {
        assert_eq!(parse_amount(&json!(1.5)).unwrap(), Amount(150_000_000));
        assert_eq!(parse_amount(&json!(0.00000001)).unwrap(), Amount(1));
        assert_eq!(parse_amount(&json!("2.25")).unwrap(), Amount(225_000_000));
        assert_eq!(parse_amount(&json!(7)).unwrap(), Amount(700_000_000));
        assert!(parse_amount(&json!(0.000000001)).is_err());
        assert!(parse_amount(&json!(-1)).is_err());
        assert!(parse_amount(&json!(true)).is_err());
    }

    /// Found by the `rpc_params` fuzz target: a double cannot tell neighbouring atoms apart
    /// from 2^26 TIME on, and 2100100200.345673 became 2100100200.34567308.
    #[test]
    fn large_amounts_with_decimals_must_come_as_strings() {
        let err = parse_amount(&json!(2100100200.345673)).unwrap_err();
        assert!(err.message().contains("give it as a string"), "{err:?}");
        assert_eq!(
            parse_amount(&json!("2100100200.345673")).unwrap(),
            Amount(210_010_020_034_567_300)
        );
        assert_eq!(
            parse_amount(&json!(67108863.99999999)).unwrap(),
            Amount(6_710_886_399_999_999)
        );
        assert!(parse_amount(&json!(67108864.5)).is_err());
        // Whole numbers arrive as integers and stay exact at any size.
        assert_eq!(
            parse_amount(&json!(100_000_000_000u64)).unwrap(),
            Amount(10_000_000_000_000_000_000)
        );
    }
}
