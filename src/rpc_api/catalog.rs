//! Every RPC method with its parameter names and a one-line meaning: the source of `help`,
//! of named-parameter support (`{"blockhash": ...}` becomes a positional list in this order,
//! as bitcoind does it), and of the README's method list. A test checks it against the
//! registered methods, so nothing is listed that does not exist.

/// One method.
pub struct MethodSpec {
    pub name: &'static str,
    /// Parameter names, in positional order; a trailing `?` marks an optional one.
    pub params: &'static [&'static str],
    pub category: &'static str,
    pub summary: &'static str,
}

const fn m(
    category: &'static str,
    name: &'static str,
    params: &'static [&'static str],
    summary: &'static str,
) -> MethodSpec {
    MethodSpec {
        name,
        params,
        category,
        summary,
    }
}

pub const METHODS: &[MethodSpec] = &[
    m(
        "blockchain",
        "getblockchaininfo",
        &[],
        "Chain, height, best block, sync progress and UTXO-set commitment.",
    ),
    m(
        "blockchain",
        "getblockcount",
        &[],
        "Height of the last committed block.",
    ),
    m(
        "blockchain",
        "getbestblockhash",
        &[],
        "Hash of the last committed block.",
    ),
    m(
        "blockchain",
        "getblockhash",
        &["height"],
        "Hash of the block at a height.",
    ),
    m(
        "blockchain",
        "getblock",
        &["blockhash", "verbosity?"],
        "A block: 0 = hex, 1 = JSON with txids (default), 2 = JSON with transactions.",
    ),
    m(
        "blockchain",
        "getblockheader",
        &["blockhash", "verbose?"],
        "A block header: JSON (default) or hex.",
    ),
    m(
        "blockchain",
        "gettxout",
        &["txid", "n", "include_mempool?"],
        "An unspent output, or null when it is spent or unknown.",
    ),
    m(
        "blockchain",
        "gettxoutsetinfo",
        &[],
        "Size, total amount and commitment of the UTXO set at the tip.",
    ),
    m(
        "blockchain",
        "dumptxoutset",
        &["path"],
        "Writes the UTXO set at the tip, with the headers that certify it, to a file on the node's machine.",
    ),
    m(
        "blockchain",
        "getmempoolinfo",
        &[],
        "Transactions waiting for finality: count, bytes, limits, minimum fee.",
    ),
    m(
        "blockchain",
        "getrawmempool",
        &["verbose?"],
        "Txids waiting for finality, or their entries when verbose.",
    ),
    m(
        "blockchain",
        "getmempoolentry",
        &["txid"],
        "One waiting transaction: size, fee, time, votes.",
    ),
    m(
        "rawtransactions",
        "getrawtransaction",
        &["txid", "verbose?"],
        "A transaction as hex, or JSON with finality fields when verbose.",
    ),
    m(
        "rawtransactions",
        "decoderawtransaction",
        &["hexstring"],
        "Decodes a transaction without looking it up.",
    ),
    m(
        "rawtransactions",
        "createrawtransaction",
        &["inputs", "outputs"],
        "Builds an unsigned transfer from [{txid, vout}] and {address: amount}.",
    ),
    m(
        "rawtransactions",
        "signrawtransactionwithkey",
        &["hexstring", "privkeys"],
        "Signs a transaction's inputs with the given hex secret keys.",
    ),
    m(
        "rawtransactions",
        "sendrawtransaction",
        &["hexstring", "maxfeerate?"],
        "Submits a signed transaction for finality; returns its txid.",
    ),
    m(
        "util",
        "validateaddress",
        &["address"],
        "Whether an address is valid for this network, and what it is.",
    ),
    m(
        "util",
        "estimatesmartfee",
        &["conf_target", "estimate_mode?"],
        "Fee rate (TIME per kB) that gets a transaction accepted now.",
    ),
    m(
        "network",
        "getnetworkinfo",
        &[],
        "Version, protocol, connections and addresses of this node.",
    ),
    m("network", "getpeerinfo", &[], "Every connected peer."),
    m(
        "network",
        "getconnectioncount",
        &[],
        "Number of connected peers.",
    ),
    m(
        "network",
        "addnode",
        &["node", "command"],
        "add / remove a peer address to keep connected, or onetry to dial once.",
    ),
    m(
        "network",
        "setban",
        &["subnet", "command", "bantime?", "absolute?"],
        "add / remove a ban on an IP address.",
    ),
    m(
        "network",
        "listbanned",
        &[],
        "Banned addresses and until when.",
    ),
    m("network", "clearbanned", &[], "Lifts every ban."),
    m(
        "timecoin",
        "getconsensusinfo",
        &[],
        "Block height, round, step, proposer, quorum weight and last commit time.",
    ),
    m(
        "timecoin",
        "masternodelist",
        &[],
        "Registered masternodes with tier, weight and collateral.",
    ),
    m(
        "timecoin",
        "masternodestatus",
        &["operator_key?"],
        "This node's (or the given key's) masternode record and connection.",
    ),
    m(
        "timecoin",
        "gettransactionfinality",
        &["txid"],
        "Finality state, weight for, quorum and the certificate (who signed which batch).",
    ),
    m(
        "timecoin",
        "waittransactionfinality",
        &["txid", "timeout?"],
        "Waits up to timeout seconds (default 30) for a transaction to be final.",
    ),
    m(
        "timecoin",
        "getblockcommit",
        &["blockhash"],
        "A block's commit certificate: round, who signed it with what weight, and the quorum.",
    ),
    m(
        "timecoin",
        "masternodeactivity",
        &["blocks?"],
        "Per masternode, the newest of the last blocks (default 100) whose commit it signed, and how many.",
    ),
    m(
        "timecoin",
        "listevidence",
        &[],
        "Equivocation evidence this node holds: offender, layer, height and both signed messages.",
    ),
    m(
        "address",
        "getaddressbalance",
        &["addresses"],
        "Balance of addresses: confirmed, final-unconfirmed, spending.",
    ),
    m(
        "address",
        "getaddressutxos",
        &["addresses"],
        "Unspent outputs of addresses.",
    ),
    m(
        "address",
        "getaddresstxids",
        &["addresses"],
        "Txids touching addresses, in chain order; {addresses, start, end, skip, limit}.",
    ),
    m(
        "address",
        "listunspent",
        &["minconf?", "maxconf?", "addresses?"],
        "Unspent outputs of the given addresses, in Bitcoin's listunspent shape.",
    ),
    m(
        "control",
        "backup",
        &["destination"],
        "Writes a consistent backup of the node's database to a file on the node's machine.",
    ),
    m(
        "control",
        "help",
        &["command?"],
        "This list, or one method's parameters.",
    ),
    m("control", "uptime", &[], "Seconds since the node started."),
    m("control", "stop", &[], "Stops the node."),
];

/// WebSocket subscriptions: (subscribe, notification, unsubscribe, params, meaning).
pub const SUBSCRIPTIONS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "subscribeblocks",
        "block",
        "unsubscribeblocks",
        "",
        "Each committed block: height, hash, time, tx count.",
    ),
    (
        "subscribefinality",
        "finality",
        "unsubscribefinality",
        "",
        "Each transaction final at layer 1: txid.",
    ),
    (
        "subscribeaddresses",
        "addressactivity",
        "unsubscribeaddresses",
        "[addresses]",
        "Final transactions touching the addresses (at most 1,000).",
    ),
];

pub fn find(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|s| s.name == name)
}

impl MethodSpec {
    /// A parameter's bare name (without the optional mark).
    pub fn param_name(p: &str) -> &str {
        p.trim_end_matches('?')
    }

    /// `name "param" ( "optional" )`, as bitcoind's help prints it.
    pub fn usage(&self) -> String {
        let mut s = self.name.to_string();
        for p in self.params {
            if let Some(bare) = p.strip_suffix('?') {
                s.push_str(&format!(" ( {bare} )"));
            } else {
                s.push_str(&format!(" {p}"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    /// The README's method list names every method.
    #[test]
    fn the_readme_lists_every_method() {
        let readme = include_str!("../../README.md");
        for m in super::METHODS {
            assert!(
                readme.contains(&format!("| `{}", m.name)),
                "README.md does not list {}",
                m.name
            );
        }
        for (sub, ..) in super::SUBSCRIPTIONS {
            assert!(readme.contains(sub), "README.md does not list {sub}");
        }
    }
}
