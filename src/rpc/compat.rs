//! Bitcoin JSON-RPC compatibility, as a rewrite of request and response bodies around
//! jsonrpsee (which speaks strict JSON-RPC 2.0 only).
//!
//! ```text
//! body ─► prepare ─► 2.0 request(s), ids replaced by positions ─► jsonrpsee
//!            └─► errors answered here (parse, batch size, unknown named parameter)
//! jsonrpsee reply ─► finish ─► each request's own id, dialect and place in the batch
//! ```
//!
//! Bitcoin clients send JSON-RPC 1.0 style: no `jsonrpc` field (or `"1.0"`/`"1.1"`), often
//! `text/plain`, any JSON value as id, and expect replies with both `result` and `error` (one
//! of them null) and, for a single failed request, HTTP 500 (404 for an unknown method, 400
//! for an invalid request), exactly as bitcoind answers. A request marked `"jsonrpc": "2.0"`
//! gets a strict 2.0 reply. Named parameters (an object) become positional by the catalog.
//!
//! Bodies stay raw where they can: parameters, ids and results are copied as JSON text, never
//! expanded into trees, so a request or reply costs about its own size in memory. A batch is
//! read element by element and refused at its 1,001st.

use super::error::INVALID_PARAMETER;
use crate::rpc_api::catalog;
use http::StatusCode;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// Most requests in one batch.
pub const MAX_BATCH: usize = 1_000;
/// Largest named-parameter object expanded (real ones are a few hundred bytes).
const MAX_NAMED_PARAMS_BYTES: usize = 64 * 1024;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
const INTERNAL_ERROR: i64 = -32603;

/// What answers one request of the body, in order.
#[derive(Debug)]
enum Slot {
    /// Answered here (already in the caller's dialect).
    Local(String),
    /// Sent to jsonrpsee under id = its position; the caller's id (JSON text) and dialect.
    Sent { id: String, legacy: bool },
    /// A 2.0 notification: sent, and no reply.
    Notification,
}

/// What goes on to jsonrpsee.
#[derive(Debug, Default)]
pub enum Forward {
    /// Nothing: every request was answered here.
    #[default]
    Nothing,
    /// One request, as its text.
    Single(String),
    /// A batch's requests, each as its position in the batch (its id here) and its own text,
    /// in order (a batch's calls are handed over one by one: `rpc::batch`).
    Batch(Vec<(usize, String)>),
}

impl Forward {
    /// As one body, the way jsonrpsee reads a whole batch (for fuzzing the rewrite).
    pub fn joined(&self) -> Option<String> {
        match self {
            Forward::Nothing => None,
            Forward::Single(text) => Some(text.clone()),
            Forward::Batch(calls) => {
                let texts: Vec<&str> = calls.iter().map(|(_, t)| t.as_str()).collect();
                Some(format!("[{}]", texts.join(",")))
            }
        }
    }
}

/// A request body, rewritten for jsonrpsee, with what is needed to answer in kind.
#[derive(Debug)]
pub struct Prepared {
    /// What to send to jsonrpsee.
    pub forward: Forward,
    slots: Vec<Slot>,
    batch: bool,
    /// The method of each request sent on, in order (for per-user method lists).
    methods: Vec<String>,
}

fn error_object(code: i64, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// One reply as JSON text; `id` is JSON text, `result`/`error` too.
fn reply_text(legacy: bool, id: &str, result: Option<&str>, error: Option<&str>) -> String {
    if legacy {
        format!(
            r#"{{"result":{},"error":{},"id":{}}}"#,
            result.unwrap_or("null"),
            error.unwrap_or("null"),
            id
        )
    } else {
        match error {
            Some(e) => format!(r#"{{"jsonrpc":"2.0","error":{e},"id":{id}}}"#),
            None => format!(
                r#"{{"jsonrpc":"2.0","result":{},"id":{id}}}"#,
                result.unwrap_or("null")
            ),
        }
    }
}

fn local_error(legacy: bool, id: &str, code: i64, message: &str) -> Slot {
    let e = error_object(code, message).to_string();
    Slot::Local(reply_text(legacy, id, None, Some(&e)))
}

/// `Some(value)` for a present field, even `null`, so an absent id and `"id": null` differ.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// One request, its parts kept as JSON text.
#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<Option<&'a RawValue>>,
}

/// Rewrites request `index` for jsonrpsee: returns its text and method (if sent) and its slot.
fn rewrite(item: &RawValue, index: usize) -> (Option<(String, String)>, Slot) {
    let Ok(req) = serde_json::from_str::<RawRequest>(item.get()) else {
        // Not an object: nothing says which dialect; bitcoind answers legacy.
        return (
            None,
            local_error(true, "null", INVALID_REQUEST, "Invalid Request object"),
        );
    };
    let legacy = req.jsonrpc.map(RawValue::get) != Some(r#""2.0""#);
    // A 1.0 request without id still gets an answer (id null), as bitcoind does.
    let id = match req.id {
        Some(Some(raw)) => Some(raw.get().to_string()),
        Some(None) => Some("null".to_string()),
        None if legacy => Some("null".to_string()),
        None => None,
    };
    let shown_id = id.clone().unwrap_or_else(|| "null".into());
    let method: Option<String> = req.method.and_then(|m| serde_json::from_str(m.get()).ok());
    let Some(method) = method else {
        return (
            None,
            local_error(
                legacy,
                &shown_id,
                INVALID_REQUEST,
                "Method must be a string",
            ),
        );
    };
    let params = match req.params.map(RawValue::get) {
        None | Some("null") => None,
        Some(p) if p.starts_with('[') => Some(p.to_string()),
        Some(p) if p.starts_with('{') => match named_to_positional(&method, p) {
            Ok(positional) => Some(positional),
            Err(e) => return (None, local_error(legacy, &shown_id, e.0, &e.1)),
        },
        Some(_) => {
            return (
                None,
                local_error(
                    legacy,
                    &shown_id,
                    INVALID_REQUEST,
                    "Params must be an array or an object",
                ),
            )
        }
    };
    let method_json = Value::String(method.clone()).to_string();
    let params_part = params
        .map(|p| format!(r#","params":{p}"#))
        .unwrap_or_default();
    match id {
        Some(id) => (
            Some((
                format!(r#"{{"jsonrpc":"2.0","method":{method_json}{params_part},"id":{index}}}"#),
                method,
            )),
            Slot::Sent { id, legacy },
        ),
        None => (
            Some((
                format!(r#"{{"jsonrpc":"2.0","method":{method_json}{params_part}}}"#),
                method,
            )),
            Slot::Notification,
        ),
    }
}

/// `{"a": 1, "c": 3}` → `[1, null, 3]` by the method's parameter order; methods the catalog
/// does not list (subscriptions) keep their object.
fn named_to_positional(method: &str, text: &str) -> Result<String, (i64, String)> {
    let Some(spec) = catalog::find(method) else {
        return Ok(text.to_string());
    };
    // `getaddress*` take one object argument in the address index's own convention.
    if spec.params == ["addresses"] {
        return Ok(format!("[{text}]"));
    }
    if text.len() > MAX_NAMED_PARAMS_BYTES {
        return Err((INVALID_REQUEST, "Named parameters too large".into()));
    }
    let mut named: Map<String, Value> =
        serde_json::from_str(text).map_err(|_| (INVALID_REQUEST, "Invalid params".to_string()))?;
    let mut positional = Vec::new();
    for (i, p) in spec.params.iter().enumerate() {
        if let Some(v) = named.remove(catalog::MethodSpec::param_name(p)) {
            positional.resize(i, Value::Null);
            positional.push(v);
        }
    }
    if let Some(unknown) = named.keys().next() {
        return Err((
            INVALID_PARAMETER as i64,
            format!("Unknown named parameter {unknown}"),
        ));
    }
    Ok(Value::Array(positional).to_string())
}

/// A batch read element by element, stopping at the first past the limit.
enum Body<'a> {
    Single(&'a RawValue),
    Batch(Vec<&'a RawValue>),
    TooLarge,
}

fn read_body(text: &str) -> Result<Body<'_>, serde_json::Error> {
    if !text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map(Body::Single);
    }
    struct Limited;
    impl<'de> Visitor<'de> for Limited {
        type Value = Option<Vec<&'de RawValue>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON-RPC batch")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                if items.len() == MAX_BATCH {
                    // Skim the rest (keeping nothing) so the body still has to be valid JSON.
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                    return Ok(None);
                }
                items.push(item);
            }
            Ok(Some(items))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let items = de.deserialize_seq(Limited)?;
    match items {
        // Past the limit, the rest is not read at all.
        None => Ok(Body::TooLarge),
        Some(items) => {
            de.end()?;
            Ok(Body::Batch(items))
        }
    }
}

/// Reads a request body.
pub fn prepare(body: &[u8]) -> Prepared {
    let refuse = |code, message: &str| Prepared {
        forward: Forward::Nothing,
        slots: vec![local_error(true, "null", code, message)],
        batch: false,
        methods: Vec::new(),
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return refuse(PARSE_ERROR, "Parse error");
    };
    match read_body(text) {
        Err(_) => refuse(PARSE_ERROR, "Parse error"),
        Ok(Body::TooLarge) => refuse(
            INVALID_REQUEST,
            &format!("Batch larger than the limit of {MAX_BATCH} requests"),
        ),
        Ok(Body::Batch(items)) if items.is_empty() => refuse(INVALID_REQUEST, "Empty batch"),
        Ok(Body::Batch(items)) => {
            let mut sent = Vec::new();
            let mut methods = Vec::new();
            let mut slots = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let (text, slot) = rewrite(item, i);
                if let Some((text, method)) = text {
                    sent.push((i, text));
                    methods.push(method);
                }
                slots.push(slot);
            }
            Prepared {
                forward: if sent.is_empty() {
                    Forward::Nothing
                } else {
                    Forward::Batch(sent)
                },
                slots,
                batch: true,
                methods,
            }
        }
        Ok(Body::Single(item)) => {
            let (forward, slot) = rewrite(item, 0);
            let (forward, methods) = match forward {
                Some((text, method)) => (Forward::Single(text), vec![method]),
                None => (Forward::Nothing, Vec::new()),
            };
            Prepared {
                forward,
                slots: vec![slot],
                batch: false,
                methods,
            }
        }
    }
}

/// One jsonrpsee reply, kept as text.
#[derive(Deserialize)]
struct RawReply<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// A reply's error as bitcoind shapes it: `{code, message}` only.
fn legacy_error(raw: &RawValue) -> String {
    let e: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
    json!({
        "code": e.get("code").cloned().unwrap_or(json!(-1)),
        "message": e.get("message").cloned().unwrap_or(json!("")),
    })
    .to_string()
}

fn error_code(text: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.get("error")?.get("code")?.as_i64()
}

impl Prepared {
    /// Answers every request with the same error (the node is not ready for any).
    pub fn refuse_all(mut self, code: i32, message: &str) -> Prepared {
        self.forward = Forward::Nothing;
        for slot in &mut self.slots {
            if let Slot::Sent { id, legacy } = slot {
                *slot = local_error(*legacy, id, code as i64, message);
            }
        }
        self
    }

    /// The methods of the requests that would be sent on.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.methods.iter().map(String::as_str)
    }

    /// The method of each request sent on, in the order of `forward`'s requests.
    pub fn method_list(&self) -> &[String] {
        &self.methods
    }

    /// How many requests the body held.
    pub fn requests(&self) -> usize {
        self.slots.len()
    }

    /// The reply body and status, given jsonrpsee's reply to `forward` (if it was sent): for a
    /// batch, a JSON array of the replies in any order (each names its request's position).
    /// `None` as body means no content (only notifications were sent).
    pub fn finish(self, forwarded: Option<&[u8]>) -> (StatusCode, Option<String>) {
        let text = forwarded
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        let replies: Vec<RawReply> = if self.batch {
            serde_json::from_str(text).unwrap_or_default()
        } else {
            serde_json::from_str(text)
                .map(|r| vec![r])
                .unwrap_or_default()
        };
        // Replies by the position their surrogate id names, found in one pass.
        let mut by_position: Vec<Option<&RawReply>> = Vec::new();
        by_position.resize_with(self.slots.len(), || None);
        for r in &replies {
            let position = r.id.and_then(|id| id.get().parse::<usize>().ok());
            if let Some(slot) = position.and_then(|i| by_position.get_mut(i)) {
                *slot = Some(r);
            }
        }
        let mut out = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.into_iter().enumerate() {
            match slot {
                Slot::Local(t) => out.push(t),
                Slot::Notification => {}
                Slot::Sent { id, legacy } => {
                    let t = match by_position[i] {
                        Some(r) => {
                            let error = r.error.map(|e| {
                                if legacy {
                                    legacy_error(e)
                                } else {
                                    e.get().to_string()
                                }
                            });
                            reply_text(legacy, &id, r.result.map(RawValue::get), error.as_deref())
                        }
                        None => {
                            let e = error_object(INTERNAL_ERROR, "Internal error: no reply")
                                .to_string();
                            reply_text(legacy, &id, None, Some(&e))
                        }
                    };
                    out.push(t);
                }
            }
        }
        if out.is_empty() {
            return (StatusCode::NO_CONTENT, None);
        }
        if self.batch {
            return (StatusCode::OK, Some(format!("[{}]", out.join(","))));
        }
        let single = out.remove(0);
        // bitcoind's statuses for a single legacy request; 2.0 replies are always 200.
        let status = if single.starts_with(r#"{"jsonrpc""#) {
            StatusCode::OK
        } else {
            match error_code(&single) {
                None => StatusCode::OK,
                Some(INVALID_REQUEST) => StatusCode::BAD_REQUEST,
                Some(METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
                Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        };
        (status, Some(single))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` through prepare, a fake jsonrpsee (`server` answers each 2.0 request), and
    /// finish.
    fn run(body: &str, server: impl Fn(&Value) -> Value) -> (StatusCode, Value) {
        let p = prepare(body.as_bytes());
        let parse = |f: &str| serde_json::from_str::<Value>(f).unwrap();
        let fwd = match &p.forward {
            Forward::Nothing => None,
            Forward::Single(f) => Some(server(&parse(f)).to_string()),
            // Replies in reverse: `finish` places each by the position its id names.
            Forward::Batch(calls) => {
                let replies: Vec<Value> = (calls.iter().rev())
                    .map(|(_, t)| parse(t))
                    .filter(|r| r.get("id").is_some())
                    .map(|r| server(&r))
                    .collect();
                Some(Value::Array(replies).to_string())
            }
        };
        let (status, body) = p.finish(fwd.as_deref().map(str::as_bytes));
        let v = body
            .map(|b| serde_json::from_str(&b).unwrap())
            .unwrap_or(Value::Null);
        (status, v)
    }

    fn echo_params(r: &Value) -> Value {
        assert_eq!(r["jsonrpc"], "2.0");
        json!({"jsonrpc":"2.0","id":r["id"],"result":r["params"]})
    }

    fn not_found(r: &Value) -> Value {
        json!({"jsonrpc":"2.0","id":r["id"],"error":{"code":-32601,"message":"Method not found"}})
    }

    #[test]
    fn legacy_requests_get_legacy_replies_and_bitcoind_statuses() {
        let (s, v) = run(
            r#"{"method":"getblockhash","params":[1],"id":"x"}"#,
            echo_params,
        );
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"result":[1],"error":null,"id":"x"}));
        let (s, v) = run(r#"{"jsonrpc":"1.0","method":"nope","id":1}"#, not_found);
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(
            v,
            json!({"result":null,"error":{"code":-32601,"message":"Method not found"},"id":1})
        );
        // Any JSON value is an id, echoed as sent (jsonrpsee alone takes only some).
        let (_, v) = run(
            r#"{"method":"a","params":[],"id":{"k":[-1.5]}}"#,
            echo_params,
        );
        assert_eq!(v["id"], json!({"k":[-1.5]}));
        // 2.0 stays 2.0, with HTTP 200.
        let (s, v) = run(r#"{"jsonrpc":"2.0","method":"nope","id":1}"#, not_found);
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v.get("result").is_none());
        // A 2.0 notification: no content.
        let (s, v) = run(r#"{"jsonrpc":"2.0","method":"a"}"#, echo_params);
        assert_eq!((s, v), (StatusCode::NO_CONTENT, Value::Null));
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
        let never = |_: &Value| -> Value { panic!("must not be forwarded") };
        let (s, v) = run("{not json", never);
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v["error"]["code"], -32700);
        let (_, v) = run("[]", never);
        assert_eq!(v["error"]["code"], -32600);
        let big = format!(
            "[{}]",
            vec![r#"{"method":"x","id":1}"#; 10 * MAX_BATCH].join(",")
        );
        let (_, v) = run(&big, never);
        assert_eq!(v["error"]["code"], -32600);
        let (s, v) = run("42", never);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], -32600);
        let (_, v) = run(r#"[1, 2] trailing"#, never);
        assert_eq!(v["error"]["code"], -32700);
    }

    #[test]
    fn batches_keep_order_dialects_and_duplicate_ids() {
        let (s, v) = run(
            r#"[{"method":"a","params":[1],"id":1},7,{"jsonrpc":"2.0","method":"b","params":[2],"id":1},{"jsonrpc":"2.0","method":"n"}]"#,
            echo_params,
        );
        assert_eq!(s, StatusCode::OK);
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 3, "the notification has no reply");
        assert_eq!(items[0], json!({"result":[1],"error":null,"id":1}));
        assert_eq!(items[1]["error"]["code"], -32600);
        assert_eq!(items[2], json!({"jsonrpc":"2.0","result":[2],"id":1}));
    }
}
