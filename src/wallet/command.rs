//! `timed wallet ...`: the command-line front of [`super::send`] and [`super::history`].
//! Every subcommand but `new` talks to a node through [`super::connect`].

use super::args::{OwnerArgs, WalletCommand};
use super::connect::{self, ConnectError, Node, CALL_TIMEOUT};
use super::history::{self, HistoryError};
use super::proof::{self, ProofError};
use super::send::{self, SendError};
use crate::client::ClientError;
use crate::config::keyfile;
use crate::config::Overrides;
use crate::types::{
    Address, AddressError, Amount, AmountError, Hash32, MasternodeRegistration, Network, OutPoint,
    SecretKey, TxOutput, TxPayload,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `--wait` waits for finality.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Rpc(#[from] ClientError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Key(#[from] keyfile::KeyFileError),
    // The causes below are in the messages, not chained as sources: `main` prints a chain in
    // full, and the cause would show twice.
    #[error("bad {flag} address: {reason}")]
    BadAddress {
        flag: &'static str,
        reason: AddressError,
    },
    #[error("bad --amount: {0}")]
    BadAmount(AmountError),
    #[error("the node sent a reply this wallet cannot read: {0}")]
    BadReply(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
}

/// Writes one line to stdout. A reader that went away (`... | head`) ends the output quietly
/// instead of a panic, as `println!` would.
pub fn print_line(line: std::fmt::Arguments) -> std::io::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `println!` through [`print_line`], returning a [`WalletError`] from the function.
macro_rules! out {
    ($($arg:tt)*) => {
        print_line(format_args!($($arg)*)).map_err(WalletError::Output)?
    };
}

/// Writes a new key to `out` and returns its address on `network` (`timed wallet new`, and
/// `timed keygen`, its older name).
pub fn new_key(out: &Path, network: Network) -> Result<Address, WalletError> {
    let key = SecretKey::generate();
    keyfile::write_new(out, &key)?;
    Ok(Address::from_public_key(network, &key.public_key()))
}

/// Collateral outputs of registered masternodes: never spent by accident.
fn collaterals(node: &Node) -> Result<HashSet<OutPoint>, WalletError> {
    let list = node
        .endpoint
        .call("masternodelist", json!([]), CALL_TIMEOUT)?;
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

/// The address named by `--address` (checked for the node's network) or `--key`.
fn owner_address(owner: &OwnerArgs, network: Network) -> Result<Address, WalletError> {
    match (&owner.address, &owner.key) {
        (Some(a), _) => Address::parse(a, network).map_err(|reason| WalletError::BadAddress {
            flag: "--address",
            reason,
        }),
        (None, Some(k)) => Ok(Address::from_public_key(
            network,
            &keyfile::read(k)?.public_key(),
        )),
        (None, None) => Err(WalletError::Invalid("give --address or --key".into())),
    }
}

fn finish(
    node: &Node,
    txid: crate::types::Txid,
    start: Instant,
    wait: bool,
) -> Result<(), WalletError> {
    out!("{txid}");
    if wait {
        let took = send::wait_final(&node.endpoint, &txid, start, WAIT_TIMEOUT)?;
        out!("final in {} ms", took.as_millis());
    }
    Ok(())
}

/// An amount in atoms from a reply field, or a clear complaint.
fn atoms(v: &Value, what: &str) -> Result<Amount, WalletError> {
    v.as_u64()
        .map(Amount)
        .ok_or_else(|| WalletError::BadReply(format!("{what}: {v}")))
}

fn balance(node: &Node, owner: &OwnerArgs) -> Result<(), WalletError> {
    let addr = owner_address(owner, node.network()?)?.to_string();
    let b = node
        .endpoint
        .call("getaddressbalance", json!([[addr]]), CALL_TIMEOUT)?;
    out!("address     {addr}");
    out!("balance     {} TIME", atoms(&b["balance"], "balance")?);
    out!("confirmed   {} TIME", atoms(&b["confirmed"], "confirmed")?);
    out!(
        "unconfirmed {} TIME (final, not yet in a block)",
        atoms(&b["unconfirmed"], "unconfirmed")?
    );
    out!("spending    {} TIME", atoms(&b["spending"], "spending")?);
    Ok(())
}

fn utxos(node: &Node, owner: &OwnerArgs) -> Result<(), WalletError> {
    let addr = owner_address(owner, node.network()?)?.to_string();
    let locked = collaterals(node)?;
    let list = node
        .endpoint
        .call("getaddressutxos", json!([[addr]]), CALL_TIMEOUT)?;
    let list = list
        .as_array()
        .ok_or_else(|| WalletError::BadReply(list.to_string()))?;
    let mut rows = Vec::with_capacity(list.len());
    for u in list {
        let bad = || WalletError::BadReply(u.to_string());
        let txid = u["txid"]
            .as_str()
            .and_then(|t| Hash32::from_hex(t).ok())
            .ok_or_else(bad)?;
        let vout = u["outputIndex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(bad)?;
        let amount = atoms(&u["satoshis"], "satoshis")?;
        let height = match &u["height"] {
            Value::Null => None,
            h => Some(h.as_u64().ok_or_else(bad)?),
        };
        rows.push((height, OutPoint::new(txid, vout), amount));
    }
    // Oldest first; outputs final but not yet in a block last.
    rows.sort_by_key(|(h, op, _)| (h.unwrap_or(u64::MAX), *op));
    // Outputs being spent are not in getaddressutxos: the balance's `spending` sums them.
    let b = node
        .endpoint
        .call("getaddressbalance", json!([[addr]]), CALL_TIMEOUT)?;
    out!("{:<69} {:>20}  STATE", "OUTPUT", "AMOUNT (TIME)");
    let mut total = Amount(0);
    for (height, op, amount) in &rows {
        let mut state = match height {
            Some(h) => format!("confirmed, height {h}"),
            None => "final, unconfirmed".to_string(),
        };
        if locked.contains(op) {
            state.push_str(", masternode collateral");
        }
        total = Amount(total.atoms().saturating_add(amount.atoms()));
        out!("{:<69} {:>20}  {state}", op.to_string(), amount.to_string());
    }
    out!(
        "{} unspent outputs, {total} TIME; {} TIME more in outputs being spent (not listed)",
        rows.len(),
        atoms(&b["spending"], "spending")?
    );
    Ok(())
}

fn history(node: &Node, owner: &OwnerArgs, last: usize) -> Result<(), WalletError> {
    let addr = owner_address(owner, node.network()?)?;
    let entries = history::fetch(&node.endpoint, &addr.to_string(), &addr.key_hash, last)?;
    for e in &entries {
        out!(
            "{}  {:>20} TIME  {}",
            e.txid,
            history::signed_time(e.net),
            e.place
        );
    }
    if entries.is_empty() {
        out!("no transactions for {addr}");
    }
    Ok(())
}

/// Reads a file the user named, bounded.
fn read_input(path: &Path) -> Result<String, WalletError> {
    let read = || -> std::io::Result<String> {
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::open(path)?, proof::MAX_INPUT_BYTES + 1),
            &mut text,
        )?;
        if text.len() as u64 > proof::MAX_INPUT_BYTES {
            return Err(std::io::Error::other(format!(
                "more than {} MB",
                proof::MAX_INPUT_BYTES >> 20
            )));
        }
        Ok(text)
    };
    read().map_err(|e| WalletError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// `timed wallet verify-finality`: no node is asked anything.
fn verify_finality(
    network: Option<Network>,
    proof_arg: &str,
    masternodes: &Path,
) -> Result<(), WalletError> {
    let as_file = Path::new(proof_arg);
    let proof_text = if as_file.is_file() {
        read_input(as_file)?
    } else if hex::decode(proof_arg.trim()).is_ok() {
        proof_arg.to_string()
    } else {
        return Err(WalletError::Read {
            path: proof_arg.to_string(),
            reason: "no such file, and not a proof's hex either".into(),
        });
    };
    let proof = proof::parse_proof(&proof_text)?;
    let (set, networks) = proof::parse_set(&read_input(masternodes)?, network)?;
    let v = proof::verify(&proof, &set, &networks)?;
    let report = json!({
        "txid": v.txid.to_hex(),
        "final": true,
        "network": v.network.to_string(),
        "slot": v.slot,
        "set_hash": v.set_hash.to_hex(),
        "signers": v.signers,
        "signer_weight": v.signer_weight,
        "total_weight": v.total_weight,
        "proof_bytes": crate::types::Canonical::to_bytes(&proof).len(),
    });
    out!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string())
    );
    Ok(())
}

/// Runs a wallet subcommand; `globals` are the top-level flags (--network, --datadir,
/// --config) that say which node to talk to.
pub fn run(globals: &Overrides, cmd: &WalletCommand) -> Result<(), WalletError> {
    match cmd {
        WalletCommand::New { out } => {
            let network = globals.keys.network.unwrap_or(Network::Mainnet);
            out!("{}", new_key(out, network)?);
            Ok(())
        }
        WalletCommand::Address { rpc, key } => {
            let key = keyfile::read(key)?;
            // A key has an address on every network: ask the node only if no flag says which.
            let network = match globals.keys.network {
                Some(n) => n,
                None => connect::connect(globals, rpc)?.network()?,
            };
            out!("{}", Address::from_public_key(network, &key.public_key()));
            Ok(())
        }
        WalletCommand::Balance { rpc, owner } => balance(&connect::connect(globals, rpc)?, owner),
        WalletCommand::Utxos { rpc, owner } => utxos(&connect::connect(globals, rpc)?, owner),
        WalletCommand::History { rpc, owner, last } => {
            history(&connect::connect(globals, rpc)?, owner, *last)
        }
        WalletCommand::Send {
            rpc,
            key,
            to,
            amount,
            fee_rate,
            wait,
        } => {
            let node = connect::connect(globals, rpc)?;
            let key = keyfile::read(key)?;
            let amount = Amount::parse_decimal(amount).map_err(WalletError::BadAmount)?;
            if amount.atoms() == 0 {
                return Err(WalletError::Invalid("--amount must be more than 0".into()));
            }
            let network = node.network()?;
            let to = Address::parse(to, network).map_err(|reason| WalletError::BadAddress {
                flag: "--to",
                reason,
            })?;
            let locked = collaterals(&node)?;
            let coins: Vec<_> = send::coins(&node.endpoint, network, &key)?
                .into_iter()
                .filter(|c| !locked.contains(&c.outpoint))
                .collect();
            let out = vec![TxOutput {
                amount,
                key_hash: to.key_hash,
            }];
            let tx = send::build(network, &key, coins, out, TxPayload::Transfer, *fee_rate)?;
            let start = Instant::now();
            let txid = send::submit(&node.endpoint, &tx)?;
            finish(&node, txid, start, *wait)
        }
        WalletCommand::VerifyFinality { proof, masternodes } => {
            verify_finality(globals.keys.network, proof, masternodes)
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
            let node = connect::connect(globals, rpc)?;
            let network = node.network()?;
            let owner = keyfile::read(key)?;
            let operator = keyfile::read(operator_key)?;
            let collateral = parse_outpoint(collateral)?;
            let locked = collaterals(&node)?;
            let coins: Vec<_> = send::coins(&node.endpoint, network, &owner)?
                .into_iter()
                .filter(|c| c.outpoint != collateral && !locked.contains(&c.outpoint))
                .collect();
            let payload = TxPayload::from(MasternodeRegistration::new(
                *tier,
                collateral,
                &operator,
                p2p_addr.clone(),
            ));
            let mut tx = send::build(
                network,
                &owner,
                coins,
                Vec::new(),
                payload,
                send::DEFAULT_FEE_RATE,
            )?;
            // The operator's consent; the txid (which the inputs signed) leaves it out.
            tx.sign_operator(network, &operator);
            let start = Instant::now();
            let txid = send::submit(&node.endpoint, &tx)?;
            finish(&node, txid, start, *wait)
        }
    }
}
