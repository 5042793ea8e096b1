//! The JSON behind each page, composed from the read-only RPC methods in process (one HTTP
//! request per page, however many reads it takes, so a page load stays within the rate limit).
//!
//! ```text
//! summary      getblockchaininfo + getconsensusinfo + getmempoolinfo
//! blocks       per height: getblockhash, getblockheader, getblockcommit
//! block        getblock (verbosity 2) + getblockcommit
//! tx           getrawtransaction + gettransactionfinality (+ the certificate the feed kept)
//! address      validateaddress, getaddressbalance, getaddressutxos, getaddresstxids, and
//!              getrawtransaction per shown transaction for what it moved
//! masternodes  masternodelist + masternodeactivity
//! pool         getmempoolinfo + getrawmempool (verbose)
//! peers        getpeerinfo
//! ```

use super::api::{CallError, ReadOnly};
use super::feed::Feed;
use crate::types::PublicKey;
use http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Most blocks one `blocks` page lists.
pub const MAX_BLOCKS_PAGE: u64 = 25;
/// Transactions an address page shows (the newest), and outputs.
pub const HISTORY_SHOWN: usize = 25;
pub const OUTPUTS_SHOWN: usize = 100;
/// Pool entries a pool page shows (highest fee rate first).
pub const POOL_SHOWN: usize = 200;
/// Blocks of the first window searched for an address's newest transactions (doubled until
/// enough are found or the window covers the chain).
const FIRST_HISTORY_WINDOW: u64 = 8;
/// Txids read from one window at most (the RPC's largest page): a window that holds more
/// shows the newest of its first this-many.
const WINDOW_TXIDS: usize = 10_000;
/// Atoms in one TIME, to turn the RPC's decimal amounts back into integers.
const ATOMS_PER_TIME: f64 = 100_000_000.0;

/// Why a view could not be built: the status and a message for the page.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ViewError {
    pub status: StatusCode,
    pub message: String,
}

impl ViewError {
    pub fn bad_request(message: impl Into<String>) -> ViewError {
        ViewError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> ViewError {
        ViewError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<CallError> for ViewError {
    fn from(e: CallError) -> ViewError {
        let status = if e.is_not_found() {
            StatusCode::NOT_FOUND
        } else if e.is_bad_input() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ViewError {
            status,
            message: e.to_string(),
        }
    }
}

type ViewResult = Result<Value, ViewError>;

async fn tip(api: &ReadOnly) -> Result<u64, ViewError> {
    let info = api.call("getblockchaininfo", vec![]).await?;
    Ok(info["blocks"].as_u64().unwrap_or(0))
}

pub async fn summary(api: &ReadOnly) -> ViewResult {
    let chain = api.call("getblockchaininfo", vec![]).await?;
    let consensus = api.call("getconsensusinfo", vec![]).await?;
    let pool = api.call("getmempoolinfo", vec![]).await?;
    Ok(json!({
        "chain": chain["chain"],
        "height": chain["blocks"],
        "bestblockhash": chain["bestblockhash"],
        "syncing": chain["initialblockdownload"],
        "consensus": consensus,
        "pool": { "size": pool["size"], "bytes": pool["bytes"] },
    }))
}

/// Who signed a block's commit, in short: signers, their weight and the quorum.
fn commit_summary(commit: &Value) -> Value {
    json!({
        "round": commit["round"],
        "signers": commit["signers"].as_array().map_or(0, Vec::len),
        "weight": commit["weight"],
        "quorum": commit["quorum"],
    })
}

/// Up to `count` blocks from `top` (default: the tip) down, newest first.
pub async fn blocks(api: &ReadOnly, count: u64, top: Option<u64>) -> ViewResult {
    if count == 0 || count > MAX_BLOCKS_PAGE {
        return Err(ViewError::bad_request(format!(
            "count must be 1 to {MAX_BLOCKS_PAGE}"
        )));
    }
    let tip = tip(api).await?;
    let top = top.map_or(tip, |t| t.min(tip));
    let mut rows = Vec::new();
    for height in (top.saturating_sub(count - 1)..=top).rev() {
        let hash = api.call("getblockhash", vec![json!(height)]).await?;
        let header = api
            .call("getblockheader", vec![hash.clone(), json!(true)])
            .await?;
        // A fast-synced node has no certificates below its snapshot; genesis has none.
        let commit = match api.call("getblockcommit", vec![hash.clone()]).await {
            Ok(c) => commit_summary(&c),
            Err(e) if e.is_not_found() => Value::Null,
            Err(e) => return Err(e.into()),
        };
        rows.push(json!({
            "height": height,
            "hash": hash,
            "time_ms": header["time_ms"],
            "proposer": header["proposer"],
            "round": header["round"],
            "nTx": header["nTx"],
            "commit": commit,
        }));
    }
    Ok(json!({ "tip": tip, "blocks": rows }))
}

/// A block by height (digits) or hash, with its transactions and commit certificate.
pub async fn block(api: &ReadOnly, id: &str) -> ViewResult {
    let hash = if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        let height: u64 = id
            .parse()
            .map_err(|_| ViewError::bad_request(format!("{id} is not a block height")))?;
        api.call("getblockhash", vec![json!(height)])
            .await
            .map_err(|e| match e.is_bad_input() {
                true => ViewError::not_found(format!("there is no block at height {height}")),
                false => e.into(),
            })?
    } else {
        json!(id)
    };
    let block = api.call("getblock", vec![hash.clone(), json!(2)]).await?;
    let commit = match api.call("getblockcommit", vec![hash]).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => Value::Null,
        Err(e) => return Err(e.into()),
    };
    Ok(json!({ "block": block, "commit": commit }))
}

/// A transaction, where it stands, and the proof: the vote batches that made it final and how
/// long that took here (from the node while it holds them, else as the feed kept them), and
/// its block's commit.
pub async fn tx(api: &ReadOnly, feed: &Feed, txid: &str) -> ViewResult {
    let tx = api
        .call("getrawtransaction", vec![json!(txid), json!(true)])
        .await?;
    let mut finality = api
        .call("gettransactionfinality", vec![json!(txid)])
        .await?;
    if finality["certificate"].is_null() {
        if let Some(kept) = feed.kept(txid) {
            finality["certificate"] = kept["certificate"].clone();
            finality["certificate_kept"] = json!(true);
            if finality.get("time_to_finality_ms").is_none() {
                if let Some(ms) = kept.get("time_to_finality_ms") {
                    finality["time_to_finality_ms"] = ms.clone();
                }
            }
        }
    }
    let commit = match tx.get("blockhash") {
        Some(hash) => match api.call("getblockcommit", vec![hash.clone()]).await {
            Ok(c) => commit_summary(&c),
            Err(e) if e.is_not_found() => Value::Null,
            Err(e) => return Err(e.into()),
        },
        None => Value::Null,
    };
    Ok(json!({ "tx": tx, "finality": finality, "block_commit": commit }))
}

/// A decimal TIME amount from the RPC as atoms (exact below 2^53 atoms, as the RPC prints).
fn atoms(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * ATOMS_PER_TIME).round() as i64
}

/// Balance, unspent outputs and the newest transactions of an address, with what each
/// moved in and out of it.
pub async fn address(api: &ReadOnly, address: &str) -> ViewResult {
    let valid = api.call("validateaddress", vec![json!(address)]).await?;
    if valid["isvalid"] != json!(true) {
        return Err(ViewError::bad_request(format!(
            "{address} is not an address of this network: {}",
            valid["error"].as_str().unwrap_or("invalid")
        )));
    }
    let key_hash = valid["scriptPubKey"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let one = json!([address]);
    let balance = api.call("getaddressbalance", vec![one.clone()]).await?;
    let utxos = api.call("getaddressutxos", vec![one]).await?;
    let all_outputs = utxos.as_array().cloned().unwrap_or_default();
    let txids = newest_txids(api, address, HISTORY_SHOWN).await?;
    let mut history = Vec::new();
    // Outputs already read, by txid: a payment chain spends the previous one's change.
    let mut read: HashMap<String, Value> = HashMap::new();
    for txid in txids {
        let tx = match read.get(&txid) {
            Some(t) => t.clone(),
            None => {
                api.call("getrawtransaction", vec![json!(txid), json!(true)])
                    .await?
            }
        };
        read.insert(txid.clone(), tx.clone());
        let received: i64 = tx["vout"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["address"] == json!(address))
            .map(|o| atoms(&o["value"]))
            .sum();
        let mut sent = 0i64;
        for input in tx["vin"].as_array().into_iter().flatten() {
            let ours = input["pubkey"]
                .as_str()
                .and_then(PublicKey::from_hex)
                .is_some_and(|pk| hex::encode(pk.key_hash().0) == key_hash);
            let (Some(prev), Some(n)) = (input["txid"].as_str(), input["vout"].as_u64()) else {
                continue;
            };
            if !ours {
                continue;
            }
            let prev_tx = match read.get(prev) {
                Some(t) => t.clone(),
                None => {
                    let t = api
                        .call("getrawtransaction", vec![json!(prev), json!(true)])
                        .await?;
                    read.insert(prev.to_string(), t.clone());
                    t
                }
            };
            sent += atoms(&prev_tx["vout"][n as usize]["value"]);
        }
        history.push(json!({
            "txid": txid,
            "height": tx["blockheight"],
            "time": tx["time"],
            "final": tx["instantlock"],
            "received_atoms": received,
            "sent_atoms": sent,
            "net_atoms": received - sent,
        }));
    }
    Ok(json!({
        "address": address,
        "balance": balance,
        "outputs": all_outputs.iter().take(OUTPUTS_SHOWN).collect::<Vec<_>>(),
        "outputs_total": all_outputs.len(),
        "history": history,
    }))
}

/// The newest `want` txids touching `address`, newest first: windows of blocks ending past
/// the tip (final, unconfirmed transactions sort there), doubled until enough are found.
async fn newest_txids(
    api: &ReadOnly,
    address: &str,
    want: usize,
) -> Result<Vec<String>, ViewError> {
    let end = tip(api).await?.saturating_add(1);
    let mut window = FIRST_HISTORY_WINDOW;
    loop {
        let start = end.saturating_sub(window);
        let found = api
            .call(
                "getaddresstxids",
                vec![json!({
                    "addresses": [address],
                    "start": start,
                    "end": end,
                    "limit": WINDOW_TXIDS,
                })],
            )
            .await?;
        let list: Vec<String> = found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        if list.len() >= want || start == 0 {
            return Ok(list.into_iter().rev().take(want).collect());
        }
        window = window.saturating_mul(2);
    }
}

/// The masternode set with each one's participation in recent commits.
pub async fn masternodes(api: &ReadOnly) -> ViewResult {
    let list = api.call("masternodelist", vec![]).await?;
    let activity = api.call("masternodeactivity", vec![]).await?;
    let by_key: HashMap<&str, &Value> = activity["masternodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["operator_key"].as_str()?, a)))
        .collect();
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut m = m.clone();
            let key = m["operator_key"].as_str().unwrap_or_default().to_string();
            if let Some(a) = by_key.get(key.as_str()) {
                m["last_signed_height"] = a["last_signed_height"].clone();
                m["signed"] = a["signed"].clone();
            }
            m
        })
        .collect();
    Ok(json!({
        "masternodes": rows,
        "window": activity["blocks"],
        "tip": activity["tip"],
    }))
}

/// The pool: its size and the waiting transactions, highest fee rate first.
pub async fn pool(api: &ReadOnly) -> ViewResult {
    let info = api.call("getmempoolinfo", vec![]).await?;
    let raw = api.call("getrawmempool", vec![json!(true)]).await?;
    let mut entries: Vec<Value> = raw
        .as_object()
        .into_iter()
        .flatten()
        .map(|(txid, e)| {
            let mut e = e.clone();
            e["txid"] = json!(txid);
            e
        })
        .collect();
    let rate = |e: &Value| atoms(&e["fee"]) as f64 / e["size"].as_f64().unwrap_or(1.0).max(1.0);
    entries.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
    let total = entries.len();
    entries.truncate(POOL_SHOWN);
    Ok(json!({ "info": info, "entries": entries, "total": total }))
}

pub async fn peers(api: &ReadOnly) -> ViewResult {
    Ok(json!({ "peers": api.call("getpeerinfo", vec![]).await? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_amounts_become_exact_atoms() {
        for (v, want) in [
            (json!(1.5), 150_000_000),
            (json!(0.00000001), 1),
            (json!(999998.4999), 99_999_849_990_000),
            (json!(null), 0),
        ] {
            assert_eq!(atoms(&v), want, "{v}");
        }
    }

    #[test]
    fn rpc_refusals_keep_their_meaning_as_http_statuses() {
        let rpc = |code| CallError::Rpc {
            code,
            message: "m".into(),
        };
        assert_eq!(ViewError::from(rpc(-5)).status, StatusCode::NOT_FOUND);
        assert_eq!(ViewError::from(rpc(-8)).status, StatusCode::BAD_REQUEST);
        assert_eq!(
            ViewError::from(rpc(-1)).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
