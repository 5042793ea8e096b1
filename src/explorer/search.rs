//! The search box: what a query looks like (height, 64-hex hash, address) and what it names.
//!
//! ```text
//! "120"        ─► Height ─► getblockhash ─► block
//! "ab12…" (64) ─► Hash   ─► getblockheader? block : getrawtransaction? tx : not found
//! "TIME0…"     ─► Address ─► validateaddress ─► address, or why not (checksum, network)
//! ```
//!
//! A query that is none of these, or names nothing, gets a message saying which and why, so
//! the page can show it as is.

use super::api::ReadOnly;
use serde_json::{json, Value};

/// Longest query looked at; anything longer is no height, hash or address.
pub const MAX_QUERY: usize = 128;
/// Length of a block hash or txid in hex.
const HASH_HEX: usize = 64;
/// Every address starts with `TIME` and a network digit.
const ADDRESS_PREFIX: &str = "TIME";

/// What a query looks like, before anything is looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Height(u64),
    Hash(String),
    Address(String),
}

/// Where a query leads: a page kind and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub kind: &'static str,
    pub id: String,
}

impl Found {
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind, "id": self.id })
    }
}

/// Why a query leads nowhere; its text is shown to the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error("type a block height, a block hash, a transaction id or an address")]
    Empty,
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the node could not answer: {0}")]
    Failed(String),
}

/// Sorts a query by its shape.
pub fn classify(raw: &str) -> Result<Query, SearchError> {
    let q = raw.trim();
    if q.is_empty() {
        return Err(SearchError::Empty);
    }
    if q.len() > MAX_QUERY {
        return Err(SearchError::Malformed(format!(
            "a query is at most {MAX_QUERY} characters (this one has {})",
            q.len()
        )));
    }
    if q.bytes().all(|b| b.is_ascii_digit()) {
        return q
            .parse()
            .map(Query::Height)
            .map_err(|_| SearchError::Malformed(format!("{q} is too large to be a block height")));
    }
    // `get`, not slicing: a query may hold multi-byte characters.
    let prefix = q.get(..ADDRESS_PREFIX.len());
    if prefix.is_some_and(|p| p.eq_ignore_ascii_case(ADDRESS_PREFIX)) {
        return Ok(Query::Address(q.to_string()));
    }
    if q.bytes().all(|b| b.is_ascii_hexdigit()) {
        if q.len() != HASH_HEX {
            return Err(SearchError::Malformed(format!(
                "a block hash or transaction id is {HASH_HEX} hexadecimal characters; {q} has {}",
                q.len()
            )));
        }
        return Ok(Query::Hash(q.to_ascii_lowercase()));
    }
    Err(SearchError::Malformed(format!(
        "{q} is not a block height (digits), a block hash or transaction id ({HASH_HEX} hexadecimal \
         characters) or an address (starting with {ADDRESS_PREFIX})"
    )))
}

/// Looks the query up.
pub async fn resolve(api: &ReadOnly, raw: &str) -> Result<Found, SearchError> {
    let failed = |e: super::api::CallError| SearchError::Failed(e.to_string());
    match classify(raw)? {
        Query::Height(h) => match api.call("getblockhash", vec![json!(h)]).await {
            Ok(hash) => Ok(Found {
                kind: "block",
                id: hash.as_str().unwrap_or_default().to_string(),
            }),
            Err(e) if e.is_bad_input() => {
                let tip = api
                    .call("getblockchaininfo", vec![])
                    .await
                    .map_err(failed)?;
                Err(SearchError::NotFound(format!(
                    "there is no block at height {h}: the chain's tip is at {}",
                    tip["blocks"]
                )))
            }
            Err(e) => Err(failed(e)),
        },
        Query::Hash(hash) => {
            match api
                .call("getblockheader", vec![json!(hash), json!(true)])
                .await
            {
                Ok(_) => {
                    return Ok(Found {
                        kind: "block",
                        id: hash,
                    })
                }
                Err(e) if !e.is_not_found() => return Err(failed(e)),
                Err(_) => {}
            }
            match api.call("getrawtransaction", vec![json!(hash)]).await {
                Ok(_) => Ok(Found {
                    kind: "tx",
                    id: hash,
                }),
                Err(e) if e.is_not_found() => Err(SearchError::NotFound(format!(
                    "this node knows no block and no transaction {hash}"
                ))),
                Err(e) => Err(failed(e)),
            }
        }
        Query::Address(text) => {
            let v = api
                .call("validateaddress", vec![json!(text)])
                .await
                .map_err(failed)?;
            if v["isvalid"] == json!(true) {
                Ok(Found {
                    kind: "address",
                    id: v["address"].as_str().unwrap_or(&text).to_string(),
                })
            } else {
                Err(SearchError::Malformed(format!(
                    "{text} is not an address of this network: {}",
                    v["error"].as_str().unwrap_or("invalid")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_sorted_by_shape_and_bad_ones_say_why() {
        let hash = "ab".repeat(32);
        let table: Vec<(&str, Result<Query, &str>)> = vec![
            ("  42 ", Ok(Query::Height(42))),
            ("0", Ok(Query::Height(0))),
            (&hash, Ok(Query::Hash(hash.clone()))),
            ("TIME0abc", Ok(Query::Address("TIME0abc".into()))),
            ("time1xyz", Ok(Query::Address("time1xyz".into()))),
            ("", Err("type a block height")),
            (
                "99999999999999999999999",
                Err("too large to be a block height"),
            ),
            ("abcd", Err("64 hexadecimal characters; abcd has 4")),
            ("hello world", Err("is not a block height")),
            ("TIé€x", Err("is not a block height")),
        ];
        for (q, want) in table {
            match (classify(q), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{q:?}"),
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{q:?}: {e}"),
                (got, want) => panic!("{q:?}: got {got:?}, want {want:?}"),
            }
        }
        let upper = "AB".repeat(32);
        assert_eq!(classify(&upper), Ok(Query::Hash(hash)));
        assert!(classify(&"1".repeat(MAX_QUERY + 1)).is_err());
    }
}
