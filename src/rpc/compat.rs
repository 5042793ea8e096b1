//! Bitcoin JSON-RPC compatibility, as a rewrite of request and response bodies around
//! jsonrpsee (which speaks strict JSON-RPC 2.0 only).
//!
//! ```text
//! body ─► prepare ─► 2.0 request(s) ─► jsonrpsee ─► finish ─► body in the caller's dialect
//!            └─► errors answered here (parse, too many, unknown named parameter)
//! ```
//!
//! Bitcoin clients send JSON-RPC 1.0 style: no `jsonrpc` field (or `"1.0"`/`"1.1"`), often
//! `text/plain`, and expect replies with both `result` and `error` (one of them null) and,
//! for a single failed request, HTTP 500 (404 for an unknown method, 400 for an invalid
//! request), exactly as bitcoind answers. A request marked `"jsonrpc": "2.0"` gets a strict
//! 2.0 reply. Named parameters (an object) become positional by the catalog's names.

use super::catalog;
use super::error::INVALID_PARAMETER;
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 1_000;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;

/// A request body, rewritten for jsonrpsee, with what is needed to answer in kind.
#[derive(Debug)]
pub struct Prepared {
    /// What to send to jsonrpsee, if anything.
    pub forward: Option<Value>,
    /// Replies decided here (already in the caller's dialect).
    local: Vec<Value>,
    /// Whether the body was a batch.
    batch: bool,
    /// Whether a request with this id (as JSON text) was legacy (1.0/1.1).
    legacy_ids: HashMap<String, bool>,
    /// Dialect of a single request.
    single_legacy: bool,
}

fn error_object(code: i64, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// A reply in the given dialect.
fn reply(legacy: bool, id: Value, result: Option<Value>, error: Option<Value>) -> Value {
    if legacy {
        json!({ "result": result.unwrap_or(Value::Null), "error": error.unwrap_or(Value::Null), "id": id })
    } else {
        let mut o = json!({ "jsonrpc": "2.0", "id": id });
        match error {
            Some(e) => o["error"] = e,
            None => o["result"] = result.unwrap_or(Value::Null),
        }
        o
    }
}

/// Rewrites one request object; `Err` is the reply to give instead.
fn rewrite(req: Value) -> Result<(Value, bool), Value> {
    let Value::Object(mut obj) = req else {
        // Not even an object: nothing says which dialect; bitcoind answers legacy.
        return Err(reply(
            true,
            Value::Null,
            None,
            Some(error_object(INVALID_REQUEST, "Invalid Request object")),
        ));
    };
    let legacy = obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0");
    let id = match obj.remove("id") {
        Some(id) => Some(id),
        // A 1.0 request without id still gets an answer (id null), as bitcoind does.
        None if legacy => Some(Value::Null),
        None => None,
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(reply(
                legacy,
                id.unwrap_or(Value::Null),
                None,
                Some(error_object(INVALID_REQUEST, "Method must be a string")),
            ))
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(Value::Object(named)) => match named_to_positional(&method, named) {
            Ok(p) => Some(p),
            Err(e) => return Err(reply(legacy, id.unwrap_or(Value::Null), None, Some(e))),
        },
        Some(p @ Value::Array(_)) => Some(p),
        Some(_) => {
            return Err(reply(
                legacy,
                id.unwrap_or(Value::Null),
                None,
                Some(error_object(
                    INVALID_REQUEST,
                    "Params must be an array or an object",
                )),
            ))
        }
    };
    let mut out = Map::new();
    out.insert("jsonrpc".into(), json!("2.0"));
    out.insert("method".into(), json!(method));
    if let Some(p) = params {
        out.insert("params".into(), p);
    }
    if let Some(id) = id {
        out.insert("id".into(), id);
    }
    Ok((Value::Object(out), legacy))
}

/// `{"a": 1, "c": 3}` → `[1, null, 3]` by the method's parameter order; methods the catalog
/// does not list (subscriptions) keep their object.
fn named_to_positional(method: &str, mut named: Map<String, Value>) -> Result<Value, Value> {
    let Some(spec) = catalog::find(method) else {
        return Ok(Value::Object(named));
    };
    // `getaddress*` take one object argument in the address index's own convention.
    if spec.params == ["addresses"] && !named.contains_key("addresses") {
        return Ok(json!([Value::Object(named)]));
    }
    let mut positional = Vec::new();
    for (i, p) in spec.params.iter().enumerate() {
        if let Some(v) = named.remove(catalog::MethodSpec::param_name(p)) {
            positional.resize(i, Value::Null);
            positional.push(v);
        }
    }
    if let Some(unknown) = named.keys().next() {
        return Err(error_object(
            INVALID_PARAMETER as i64,
            &format!("Unknown named parameter {unknown}"),
        ));
    }
    Ok(Value::Array(positional))
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

/// Reads a request body.
pub fn prepare(body: &[u8]) -> Prepared {
    let mut p = Prepared {
        forward: None,
        local: Vec::new(),
        batch: false,
        legacy_ids: HashMap::new(),
        single_legacy: true,
    };
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            p.local.push(reply(
                true,
                Value::Null,
                None,
                Some(error_object(PARSE_ERROR, "Parse error")),
            ));
            return p;
        }
    };
    match parsed {
        Value::Array(items) => {
            p.batch = true;
            if items.is_empty() || items.len() > MAX_BATCH {
                p.batch = false;
                let msg = if items.is_empty() {
                    "Empty batch".to_string()
                } else {
                    format!(
                        "Batch of {} requests is larger than the limit of {MAX_BATCH}",
                        items.len()
                    )
                };
                p.local.push(reply(
                    true,
                    Value::Null,
                    None,
                    Some(error_object(INVALID_REQUEST, &msg)),
                ));
                return p;
            }
            let mut forward = Vec::with_capacity(items.len());
            for item in items {
                match rewrite(item) {
                    Ok((req, legacy)) => {
                        if let Some(id) = req.get("id") {
                            p.legacy_ids.insert(id_key(id), legacy);
                        }
                        forward.push(req);
                    }
                    Err(r) => p.local.push(r),
                }
            }
            if !forward.is_empty() {
                p.forward = Some(Value::Array(forward));
            }
        }
        other => match rewrite(other) {
            Ok((req, legacy)) => {
                p.single_legacy = legacy;
                p.forward = Some(req);
            }
            Err(r) => {
                p.single_legacy = r.get("jsonrpc").is_none();
                p.local.push(r);
            }
        },
    }
    p
}

/// A jsonrpsee reply converted to the legacy shape.
fn to_legacy(mut reply: Value) -> Value {
    let Some(obj) = reply.as_object_mut() else {
        return reply;
    };
    let error = obj.remove("error").map(|e| {
        json!({
            "code": e.get("code").cloned().unwrap_or(json!(-1)),
            "message": e.get("message").cloned().unwrap_or(json!("")),
        })
    });
    json!({
        "result": obj.remove("result").unwrap_or(Value::Null),
        "error": error.unwrap_or(Value::Null),
        "id": obj.remove("id").unwrap_or(Value::Null),
    })
}

/// The HTTP status bitcoind gives a single legacy reply.
fn legacy_status(reply: &Value) -> StatusCode {
    match reply
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
    {
        None => StatusCode::OK,
        Some(INVALID_REQUEST) => StatusCode::BAD_REQUEST,
        Some(METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Prepared {
    /// The reply body and status, given jsonrpsee's reply to `forward` (if it was sent;
    /// an empty reply means only notifications were sent).
    pub fn finish(self, forwarded: Option<&[u8]>) -> (StatusCode, Option<Vec<u8>>) {
        let answer: Option<Value> = forwarded
            .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
            .map(|b| {
                serde_json::from_slice(b).unwrap_or_else(|_| {
                    reply(
                        true,
                        Value::Null,
                        None,
                        Some(error_object(-1, "internal error: unreadable reply")),
                    )
                })
            });
        if self.batch {
            let mut all = Vec::new();
            if let Some(Value::Array(items)) = answer {
                for item in items {
                    let legacy = item
                        .get("id")
                        .and_then(|id| self.legacy_ids.get(&id_key(id)))
                        .copied()
                        .unwrap_or(false);
                    all.push(if legacy { to_legacy(item) } else { item });
                }
            } else if let Some(single) = answer {
                // jsonrpsee refused the batch as a whole.
                all.push(single);
            }
            all.extend(self.local);
            let body = serde_json::to_vec(&Value::Array(all)).unwrap_or_default();
            return (StatusCode::OK, Some(body));
        }
        let single = match answer {
            Some(a) if self.single_legacy => to_legacy(a),
            Some(a) => a,
            None => match self.local.into_iter().next() {
                Some(l) => l,
                // A 2.0 notification: no reply.
                None => return (StatusCode::OK, None),
            },
        };
        let status = if single.get("jsonrpc").is_some() {
            StatusCode::OK
        } else {
            legacy_status(&single)
        };
        (
            status,
            Some(serde_json::to_vec(&single).unwrap_or_default()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str, server: impl Fn(&Value) -> Option<Value>) -> (StatusCode, Value) {
        let p = prepare(body.as_bytes());
        let fwd = p.forward.as_ref().and_then(&server).map(|v| v.to_string());
        let (status, body) = p.finish(fwd.as_deref().map(str::as_bytes));
        (
            status,
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or(Value::Null),
        )
    }

    fn echo_params(req: &Value) -> Option<Value> {
        let one = |r: &Value| json!({"jsonrpc":"2.0","id":r["id"],"result":r["params"]});
        match req {
            Value::Array(a) => Some(Value::Array(a.iter().map(one).collect())),
            r => Some(one(r)),
        }
    }

    #[test]
    fn legacy_requests_get_legacy_replies_and_bitcoind_statuses() {
        let (s, v) = run(
            r#"{"method":"getblockhash","params":[1],"id":"x"}"#,
            echo_params,
        );
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"result":[1],"error":null,"id":"x"}));
        let not_found = |_: &Value| {
            Some(
                json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}),
            )
        };
        let (s, v) = run(r#"{"jsonrpc":"1.0","method":"nope","id":1}"#, not_found);
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            v,
            json!({"result":null,"error":{"code":-32601,"message":"Method not found"},"id":1})
        );
        // 2.0 stays 2.0, with HTTP 200.
        let (s, v) = run(r#"{"jsonrpc":"2.0","method":"nope","id":1}"#, not_found);
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v.get("result").is_none());
    }

    #[test]
    fn named_parameters_become_positional_and_unknown_names_are_refused() {
        let (_, v) = run(
            r#"{"method":"getblock","params":{"verbosity":2,"blockhash":"ab"},"id":1}"#,
            echo_params,
        );
        assert_eq!(v["result"], json!(["ab", 2]));
        let (_, v) = run(
            r#"{"method":"gettxout","params":{"txid":"ab","include_mempool":false},"id":1}"#,
            echo_params,
        );
        assert_eq!(v["result"], json!(["ab", null, false]));
        let (s, v) = run(
            r#"{"method":"getblock","params":{"hash":"ab"},"id":1}"#,
            echo_params,
        );
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], -8);
    }

    #[test]
    fn malformed_bodies_and_batches_are_answered_here() {
        let never = |_: &Value| -> Option<Value> { panic!("must not be forwarded") };
        let (s, v) = run("{not json", never);
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], -32700);
        let (_, v) = run("[]", never);
        assert_eq!(v["error"]["code"], -32600);
        let big = format!(
            "[{}]",
            vec![r#"{"method":"x","id":1}"#; MAX_BATCH + 1].join(",")
        );
        let (_, v) = run(&big, never);
        assert_eq!(v["error"]["code"], -32600);
        let (s, v) = run("42", never);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], -32600);
    }

    #[test]
    fn batches_mix_dialects_by_id() {
        let (s, v) = run(
            r#"[{"method":"a","params":[1],"id":1},{"jsonrpc":"2.0","method":"b","params":[2],"id":2},7]"#,
            echo_params,
        );
        assert_eq!(s, StatusCode::OK);
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], json!({"result":[1],"error":null,"id":1}));
        assert_eq!(items[1]["jsonrpc"], "2.0");
        assert_eq!(items[2]["error"]["code"], -32600);
    }
}
