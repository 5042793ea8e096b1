//! Peers: `getpeerinfo`, `getconnectioncount`, `getnetworkinfo`, `addnode`, `setban`,
//! `listbanned`, `clearbanned`.

use super::error::*;
use crate::context::NodeContext;
use crate::network::peers::Direction;
use jsonrpsee::types::Params;
use jsonrpsee::RpcModule;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `setban` without a time bans for a day, as bitcoind does.
const DEFAULT_BAN_SECS: u64 = 24 * 3600;
/// Longest ban `setban` accepts (ten years).
const MAX_BAN_SECS: u64 = 10 * 365 * 24 * 3600;

pub fn register(m: &mut RpcModule<Arc<NodeContext>>) -> Result<(), super::RpcError> {
    m.register_method("getconnectioncount", |_, ctx, _| -> RpcResult<usize> {
        Ok(ctx.network.peer_count())
    })?;
    m.register_method("getpeerinfo", |_, ctx, _| -> RpcResult<Vec<Value>> {
        Ok(getpeerinfo(ctx))
    })?;
    m.register_method("getnetworkinfo", |_, ctx, _| -> RpcResult<Value> {
        Ok(getnetworkinfo(ctx))
    })?;
    m.register_method("addnode", |p, ctx, _| addnode(p, ctx))?;
    m.register_method("setban", |p, ctx, _| setban(p, ctx))?;
    m.register_method("listbanned", |_, ctx, _| -> RpcResult<Vec<Value>> {
        let now = Instant::now();
        let unix_now = unix_secs();
        let entry = |address: String, kind: &str, until: Instant| {
            json!({
                "address": address,
                "type": kind,
                "banned_until": unix_now + until.saturating_duration_since(now).as_secs(),
                "ban_duration": until.saturating_duration_since(now).as_secs(),
            })
        };
        let registry = &ctx.network.registry;
        let ips = registry
            .banned(now)
            .into_iter()
            .map(|(addr, until)| entry(ban_label(addr), "ip", until));
        let keys = registry
            .banned_keys(now)
            .into_iter()
            .map(|(key, until)| entry(key.to_hex(), "node_key", until));
        Ok(ips.chain(keys).collect())
    })?;
    m.register_method("clearbanned", |_, ctx, _| -> RpcResult<Value> {
        ctx.network.registry.clear_bans();
        Ok(Value::Null)
    })?;
    Ok(())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An IP ban is stored under port 0; show it as the bare IP.
fn ban_label(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// The version number in bitcoind's form: 10000·major + 100·minor + patch.
fn numeric_version() -> u64 {
    let part = |s: &str| s.parse::<u64>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}

fn getnetworkinfo(ctx: &NodeContext) -> Value {
    let registry = &ctx.network.registry;
    let inbound = registry.connected_count(Direction::Inbound);
    let outbound = registry.connected_count(Direction::Outbound);
    let relay_fee = super::mempool::min_fee_per_kb(ctx);
    let local: Vec<Value> = match ctx.params.advertise.rsplit_once(':') {
        Some((host, port)) if !ctx.params.advertise.is_empty() => {
            vec![json!({"address": host, "port": port.parse::<u16>().unwrap_or(0), "score": 1})]
        }
        _ => Vec::new(),
    };
    json!({
        "version": numeric_version(),
        "subversion": format!("/timed:{}/", env!("CARGO_PKG_VERSION")),
        "protocolversion": crate::network::handshake::PROTOCOL_VERSION,
        "localservices": "0000000000000000",
        "localservicesnames": [],
        "localrelay": true,
        "timeoffset": ctx.network.clock_offset_ms().unwrap_or(0) / 1000,
        "networkactive": true,
        "connections": inbound + outbound,
        "connections_in": inbound,
        "connections_out": outbound,
        "networks": [
            {"name": "ipv4", "limited": false, "reachable": true, "proxy": "", "proxy_randomize_credentials": false},
            {"name": "ipv6", "limited": false, "reachable": true, "proxy": "", "proxy_randomize_credentials": false},
        ],
        "relayfee": relay_fee,
        "incrementalfee": relay_fee,
        "localaddresses": local,
        "chain": ctx.params.network.name(),
        "warnings": crate::network::clock::warning(ctx.network.clock_offset_ms()).unwrap_or_default(),
    })
}

fn getpeerinfo(ctx: &NodeContext) -> Vec<Value> {
    ctx.network
        .peer_snapshots()
        .into_iter()
        .map(|p| {
            let mut v = json!({
                "id": p.id,
                "addr": p.addr.to_string(),
                "addrbind": p.listen_addr,
                "nodekey": p.node_key.to_hex(),
                "inbound": p.inbound,
                "connection_type": if p.inbound { "inbound" } else { "outbound-full-relay" },
                "version": p.version,
                "subver": format!("/timed:{}/", p.version),
                "conntime": p.connected_at_secs,
                // bitcoind's unit: whole seconds, the peer's clock minus ours.
                "timeoffset": p.clock_offset_ms / 1000,
                "startingheight": p.starting_height,
                "synced_blocks": p.best_height,
                "synced_headers": p.best_height,
                "bytessent": p.bytes_sent,
                "bytesrecv": p.bytes_recv,
                "msgssent": p.msgs_sent,
                "msgsrecv": p.msgs_recv,
                "banscore": p.score,
                "masternode": ctx.is_masternode(&p.node_key),
            });
            if let Some(ping) = p.ping_secs {
                v["pingtime"] = json!(ping);
            }
            v
        })
        .collect()
}

/// `host:port` with a literal IP (peers are dialed by address; names are not resolved here).
pub(crate) fn parse_node(text: &str) -> RpcResult<SocketAddr> {
    text.parse().map_err(|_| {
        err(
            INVALID_PARAMETER,
            format!(
                "node must be an IP address and port, such as 203.0.113.5:24000 (not '{text}')"
            ),
        )
    })
}

fn addnode(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let node: String = seq.next().map_err(invalid_param)?;
    let command: String = seq.next().map_err(invalid_param)?;
    let addr = parse_node(&node)?;
    match command.as_str() {
        "add" | "onetry" => {
            if command == "add" && ctx.network.registry.get(&addr).is_some_and(|i| i.dialable) {
                return Err(err(CLIENT_NODE_ALREADY_ADDED, "Error: Node already added"));
            }
            ctx.network.add_peer_addr(addr);
            Ok(Value::Null)
        }
        "remove" => {
            if ctx.network.registry.forget_dialable(&addr) {
                Ok(Value::Null)
            } else {
                Err(err(
                    CLIENT_NODE_NOT_ADDED,
                    "Error: Node could not be removed. It has not been added previously.",
                ))
            }
        }
        other => Err(err(
            INVALID_PARAMETER,
            format!("command must be add, remove or onetry (not '{other}')"),
        )),
    }
}

/// What `setban` bans: an IP address, or a node key (a masternode's or any peer's identity,
/// refused from every address it may come from).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BanOf {
    Ip(SocketAddr),
    Key(crate::types::PublicKey),
}

/// A node key (64 hex digits) or an IP address ([`parse_ban_target`]).
pub(crate) fn parse_ban_of(text: &str) -> RpcResult<BanOf> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return crate::types::PublicKey::from_hex(text)
            .map(BanOf::Key)
            .ok_or_else(|| {
                err(
                    CLIENT_INVALID_IP_OR_SUBNET,
                    format!("Error: '{text}' is not a valid node key"),
                )
            });
    }
    parse_ban_target(text).map(BanOf::Ip)
}

/// An IP (bans every port of it) or `ip:port` (the port is ignored: bans are per IP).
/// Subnets wider than one address are refused.
fn parse_ban_target(text: &str) -> RpcResult<SocketAddr> {
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Ok(sock);
    }
    let bare = text
        .strip_suffix("/32")
        .or_else(|| text.strip_suffix("/128"))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 0))
        .map_err(|_| {
            err(
                CLIENT_INVALID_IP_OR_SUBNET,
                format!(
                    "Error: Invalid IP/Subnet '{text}': give one IP address, ip:port, or a \
                     node key (64 hex digits)"
                ),
            )
        })
}

fn setban(p: Params, ctx: &NodeContext) -> RpcResult<Value> {
    let mut seq = p.sequence();
    let subnet: String = seq.next().map_err(invalid_param)?;
    let command: String = seq.next().map_err(invalid_param)?;
    let bantime: Option<u64> = seq.optional_next().map_err(invalid_param)?;
    let absolute: Option<bool> = seq.optional_next().map_err(invalid_param)?;
    let target = parse_ban_of(&subnet)?;
    let now = Instant::now();
    let registry = &ctx.network.registry;
    match command.as_str() {
        "add" => {
            let already = match target {
                BanOf::Ip(addr) => registry.is_banned(&addr, now),
                BanOf::Key(key) => registry.is_key_banned(&key, now),
            };
            if already {
                return Err(err(
                    CLIENT_NODE_ALREADY_ADDED,
                    "Error: IP/Subnet already banned",
                ));
            }
            let secs = match (bantime.filter(|t| *t > 0), absolute.unwrap_or(false)) {
                (None, _) => DEFAULT_BAN_SECS,
                (Some(t), false) => t,
                (Some(t), true) => t.checked_sub(unix_secs()).ok_or_else(|| {
                    err(
                        INVALID_PARAMETER,
                        "Error: Absolute timestamp is in the past",
                    )
                })?,
            };
            if secs > MAX_BAN_SECS {
                return Err(err(
                    INVALID_PARAMETER,
                    format!("bantime is at most {MAX_BAN_SECS} seconds"),
                ));
            }
            let until = now + Duration::from_secs(secs);
            match target {
                BanOf::Ip(addr) => {
                    ctx.network.ban(addr, until);
                    tracing::info!(address = %ban_label(addr), secs, "banned over RPC");
                }
                BanOf::Key(key) => {
                    ctx.network.ban_key(key, until);
                    tracing::info!(node_key = %key.to_hex(), secs, "banned over RPC");
                }
            }
            Ok(Value::Null)
        }
        "remove" => {
            let lifted = match target {
                BanOf::Ip(addr) => registry.unban(&addr, now),
                BanOf::Key(key) => registry.unban_key(&key, now),
            };
            if lifted {
                Ok(Value::Null)
            } else {
                Err(err(CLIENT_INVALID_IP_OR_SUBNET, "Error: Unban failed. Requested address/subnet was not previously manually banned."))
            }
        }
        other => Err(err(
            INVALID_PARAMETER,
            format!("command must be add or remove (not '{other}')"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_names_an_ip_or_a_node_key() {
        let key = crate::types::SecretKey::from_bytes(&[5; 32]).public_key();
        assert_eq!(parse_ban_of(&key.to_hex()).unwrap(), BanOf::Key(key));
        assert_eq!(
            parse_ban_of("192.0.2.7").unwrap(),
            BanOf::Ip("192.0.2.7:0".parse().unwrap())
        );
        assert_eq!(
            parse_ban_of("192.0.2.7:24000").unwrap(),
            BanOf::Ip("192.0.2.7:24000".parse().unwrap())
        );
        // A key one digit short, and 64 characters that are not hex.
        assert!(parse_ban_of(&key.to_hex()[1..]).is_err());
        assert!(parse_ban_of(&"g".repeat(64)).is_err());
    }
}
