//! `timed wallet ...`: the command-line front of [`super::send`].

use super::keyfile;
use super::send::{self, SendError};
use crate::cli::WalletCommand;
use crate::rpc::client::{self, ClientError};
use crate::types::{
    Address, Amount, Hash32, MasternodeRegistration, Network, OutPoint, TxOutput, TxPayload,
};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long `--wait` waits for finality.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Rpc(#[from] ClientError),
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    #[error("{0}")]
    Invalid(String),
}

/// The network the node at `url` runs, so signatures are made for it.
fn network_of(url: &str) -> Result<Network, WalletError> {
    let info = client::call(url, "getblockchaininfo", json!([]), Duration::from_secs(10))?;
    info["chain"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| WalletError::Invalid(format!("node at {url} reports no known chain")))
}

/// Collateral outputs of registered masternodes: never spent by accident.
fn collaterals(url: &str) -> Result<HashSet<OutPoint>, WalletError> {
    let list = client::call(url, "masternodelist", json!([]), Duration::from_secs(10))?;
    Ok(list
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| {
                    let txid = Hash32::from_hex(m["collateral"]["txid"].as_str()?).ok()?;
                    let vout = u32::try_from(m["collateral"]["vout"].as_u64()?).ok()?;
                    Some(OutPoint::new(txid, vout))
                })
                .collect()
        })
        .unwrap_or_default())
}

fn parse_outpoint(text: &str) -> Result<OutPoint, WalletError> {
    let bad = || WalletError::Invalid(format!("collateral {text:?}: expected txid:vout"));
    let (txid, vout) = text.split_once(':').ok_or_else(bad)?;
    Ok(OutPoint::new(
        Hash32::from_hex(txid).map_err(|_| bad())?,
        vout.parse().map_err(|_| bad())?,
    ))
}

fn finish(
    url: &str,
    txid: crate::types::Txid,
    start: Instant,
    wait: bool,
) -> Result<(), WalletError> {
    println!("{txid}");
    if wait {
        let took = send::wait_final(url, &txid, start, WAIT_TIMEOUT)?;
        println!("final in {} ms", took.as_millis());
    }
    Ok(())
}

pub fn run(cmd: &WalletCommand) -> Result<(), WalletError> {
    match cmd {
        WalletCommand::Send {
            rpc,
            key,
            to,
            amount,
            fee_rate,
            wait,
        } => {
            let url = &rpc.url()?;
            let network = network_of(url)?;
            let key = keyfile::read(key)?;
            let to =
                Address::parse(to, network).map_err(|e| WalletError::Invalid(e.to_string()))?;
            let amount = Amount::parse_decimal(amount)
                .map_err(|e| WalletError::Invalid(format!("--amount: {e}")))?;
            let locked = collaterals(url)?;
            let coins: Vec<_> = send::coins(url, network, &key)?
                .into_iter()
                .filter(|c| !locked.contains(&c.outpoint))
                .collect();
            let out = vec![TxOutput {
                amount,
                key_hash: to.key_hash,
            }];
            let tx = send::build(network, &key, coins, out, TxPayload::Transfer, *fee_rate)?;
            let start = Instant::now();
            let txid = send::submit(url, &tx)?;
            finish(url, txid, start, *wait)
        }
        WalletCommand::Balance { rpc, address, key } => {
            let url = &rpc.url()?;
            let network = network_of(url)?;
            let addr = match (address, key) {
                (Some(a), _) => a.clone(),
                (None, Some(k)) => {
                    Address::from_public_key(network, &keyfile::read(k)?.public_key()).to_string()
                }
                (None, None) => return Err(WalletError::Invalid("give --address or --key".into())),
            };
            let b = client::call(
                url,
                "getaddressbalance",
                json!([[addr]]),
                Duration::from_secs(10),
            )?;
            let time = |v: &serde_json::Value| Amount(v.as_u64().unwrap_or(0)).to_decimal_string();
            println!("address     {addr}");
            println!("balance     {} TIME", time(&b["balance"]));
            println!("confirmed   {} TIME", time(&b["confirmed"]));
            println!(
                "unconfirmed {} TIME (final, not yet in a block)",
                time(&b["unconfirmed"])
            );
            println!("spending    {} TIME", time(&b["spending"]));
            Ok(())
        }
        WalletCommand::RegisterMasternode {
            rpc,
            key,
            tier,
            collateral,
            operator_key,
            p2p_addr,
            wait,
        } => {
            let url = &rpc.url()?;
            let network = network_of(url)?;
            let owner = keyfile::read(key)?;
            let operator = keyfile::read(operator_key)?;
            let collateral = parse_outpoint(collateral)?;
            let locked = collaterals(url)?;
            let coins: Vec<_> = send::coins(url, network, &owner)?
                .into_iter()
                .filter(|c| c.outpoint != collateral && !locked.contains(&c.outpoint))
                .collect();
            let payload = TxPayload::MasternodeRegistration(MasternodeRegistration {
                tier: *tier,
                collateral,
                operator_key: operator.public_key(),
                p2p_addr: p2p_addr.clone(),
            });
            let tx = send::build(
                network,
                &owner,
                coins,
                Vec::new(),
                payload,
                send::DEFAULT_FEE_RATE,
            )?;
            let start = Instant::now();
            let txid = send::submit(url, &tx)?;
            finish(url, txid, start, *wait)
        }
    }
}
