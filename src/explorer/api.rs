//! The RPC methods the explorer may call, and calling them in process.
//!
//! The explorer answers from the same handlers as JSON-RPC (so a page and `timed rpc` never
//! disagree), but holds only the methods listed in [`READ_ONLY`]: public chain data, nothing
//! that writes, spends, waits long or reads a file. Anything else is not in its table, so no
//! request to the explorer can reach it, whatever the query string says.

use jsonrpsee::{Methods, MethodsError, Subscription};
use serde_json::Value;

/// Every method the explorer calls: public chain data, read-only. Subscriptions come with
/// their `unsubscribe…` method (a dropped subscription calls it).
pub const READ_ONLY: &[&str] = &[
    "getblockchaininfo",
    "getblockhash",
    "getblock",
    "getblockheader",
    "getblockcommit",
    "getrawtransaction",
    "gettransactionfinality",
    "getconsensusinfo",
    "masternodelist",
    "masternodeactivity",
    "getaddressbalance",
    "getaddressutxos",
    "getaddresstxids",
    "validateaddress",
    "getmempoolinfo",
    "getrawmempool",
    "getpeerinfo",
    "subscribeblocks",
    "unsubscribeblocks",
    "subscribefinality",
    "unsubscribefinality",
];

/// Bitcoin's error codes as the RPC handlers answer them, for telling "not found" and "bad
/// input" from a failure.
pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
pub const INVALID_PARAMETER: i32 = -8;
pub const INVALID_PARAMS: i32 = -32602;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The handler refused: its Bitcoin error code and message.
    #[error("{message}")]
    Rpc { code: i32, message: String },
    /// The answer could not be read (a bug, never the caller's fault).
    #[error("unreadable answer from {method}: {reason}")]
    Internal {
        method: &'static str,
        reason: String,
    },
}

impl CallError {
    /// The handler said the thing asked for does not exist (-5).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::Rpc { code, .. } if *code == INVALID_ADDRESS_OR_KEY)
    }

    /// The handler said the input was malformed (-8, -32602).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, CallError::Rpc { code, .. } if *code == INVALID_PARAMETER || *code == INVALID_PARAMS)
    }

    fn from_methods(method: &'static str, e: MethodsError) -> CallError {
        match e {
            MethodsError::JsonRpc(o) => CallError::Rpc {
                code: o.code(),
                message: o.message().to_string(),
            },
            other => CallError::Internal {
                method,
                reason: other.to_string(),
            },
        }
    }
}

/// The read-only methods, callable in process.
#[derive(Clone)]
pub struct ReadOnly {
    methods: Methods,
}

impl ReadOnly {
    /// Takes the [`READ_ONLY`] methods out of the node's table; the name of one it lacks is
    /// the error (a renamed RPC method must not silently blank a page).
    pub fn new(all: &Methods) -> Result<ReadOnly, &'static str> {
        let mut methods = Methods::new();
        for name in READ_ONLY {
            let (name, callback) = all.method_with_name(name).ok_or(*name)?;
            methods
                .verify_and_insert(name, callback.clone())
                .map_err(|_| name)?;
        }
        Ok(ReadOnly { methods })
    }

    /// Calls `method` with positional `params`; an unlisted method is refused as unknown.
    pub async fn call(&self, method: &'static str, params: Vec<Value>) -> Result<Value, CallError> {
        self.methods
            .call::<_, Value>(method, params)
            .await
            .map_err(|e| CallError::from_methods(method, e))
    }

    /// Subscribes to `method` with a queue of `queue` notifications; the subscription ends
    /// (its `next` returns `None`) when the node closes it.
    pub async fn subscribe(
        &self,
        method: &'static str,
        queue: usize,
    ) -> Result<Subscription, CallError> {
        self.methods
            .subscribe(method, Vec::<Value>::new(), queue)
            .await
            .map_err(|e| CallError::from_methods(method, e))
    }
}

/// A method table of stand-ins named `names`, each answering 7: the real in-process calling,
/// without a node.
#[cfg(test)]
pub(crate) fn stand_ins(names: &[&'static str]) -> Methods {
    let mut m = jsonrpsee::RpcModule::new(());
    for name in names {
        m.register_method(
            name,
            |_, _, _| -> Result<u64, jsonrpsee::types::ErrorObjectOwned> { Ok(7) },
        )
        .expect("distinct names");
    }
    m.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_listed_methods_are_reachable_and_a_missing_one_is_named() {
        let mut names: Vec<&'static str> = READ_ONLY.to_vec();
        names.push("stop");
        names.push("sendrawtransaction");
        let ro = ReadOnly::new(&stand_ins(&names)).unwrap();
        assert_eq!(ro.call("getblockhash", vec![]).await, Ok(Value::from(7)));
        for writer in ["stop", "sendrawtransaction"] {
            let e = ro.call(writer, vec![]).await.unwrap_err();
            assert!(
                matches!(e, CallError::Rpc { code: -32601, .. }),
                "{writer}: {e:?}"
            );
        }
        let missing = ReadOnly::new(&stand_ins(&["getblockhash"])).err();
        assert_eq!(missing, Some("getblockchaininfo"));
    }
}
