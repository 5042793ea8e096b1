//! Targets for the JSON-RPC door: the request body with its Bitcoin-compatibility rewriting,
//! and the parsers of parameters and credentials.

use crate::rpc::compat;
use crate::types::{Address, Amount, Hash32, Network};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::Value;

/// A request body as an HTTP client posts it, through `prepare`, a stand-in for jsonrpsee
/// that echoes each request's parameters, and `finish`. Properties: what is forwarded is
/// valid JSON-RPC 2.0 (a request or a batch of them, each with a string method), one reply
/// comes back per request that expects one, and the reply body is valid JSON. Then the same
/// prepared body is finished with the rest of the input as jsonrpsee's reply: any reply
/// gives a JSON answer. JSON is checked as the server reads it, values kept as raw text
/// (a number such as 1e400 is valid JSON, though no `f64` holds it).
pub fn body(data: &[u8]) {
    let prepared = compat::prepare(data);
    let requests = prepared.requests();
    let echoed = prepared.forward.joined().as_deref().map(echo);
    let expected = prepared.methods().count();
    let (_, reply) = prepared.finish(echoed.as_deref().map(str::as_bytes));
    if let Some(text) = reply {
        if let Err(e) = serde_json::from_str::<IgnoredAny>(&text) {
            panic!("the reply is not JSON ({e}): {text}");
        }
        if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(&text) {
            assert!(items.len() <= requests, "more replies than requests");
        }
    } else {
        assert!(expected > 0, "no reply, yet no request was sent on");
    }
    // jsonrpsee's reply is not outside input, but `finish` must survive whatever it gets.
    let split = data.len() / 2;
    let prepared = compat::prepare(&data[..split]);
    let (_, reply) = prepared.finish(Some(&data[split..]));
    if let Some(text) = reply {
        assert!(
            serde_json::from_str::<IgnoredAny>(&text).is_ok(),
            "the reply to a garbled server answer is not JSON: {text}"
        );
    }
}

/// A forwarded request as jsonrpsee reads it.
#[derive(serde::Deserialize)]
struct Forwarded<'a> {
    jsonrpc: String,
    /// Read only to require a string there.
    #[serde(rename = "method")]
    _method: String,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

/// What jsonrpsee would answer a forwarded body with, for a server whose every method
/// returns its parameters: a reply per request with an id, none for notifications.
fn echo(forward: &str) -> String {
    let reply = |r: &Forwarded| {
        assert_eq!(
            r.jsonrpc, "2.0",
            "a forwarded request is not 2.0: {forward}"
        );
        let params = r.params.map_or("null", RawValue::get);
        assert!(
            params == "null" || params.starts_with('[') || params.starts_with('{'),
            "forwarded parameters are neither a list nor an object: {forward}"
        );
        r.id.map(|id| format!(r#"{{"jsonrpc":"2.0","id":{},"result":{params}}}"#, id.get()))
    };
    if forward.starts_with('[') {
        let items: Vec<Forwarded> = match serde_json::from_str(forward) {
            Ok(items) => items,
            Err(e) => panic!("the forwarded batch is not JSON-RPC ({e}): {forward}"),
        };
        assert!(!items.is_empty(), "an empty batch was forwarded");
        let replies: Vec<String> = items.iter().filter_map(reply).collect();
        format!("[{}]", replies.join(","))
    } else {
        match serde_json::from_str::<Forwarded>(forward) {
            Ok(r) => reply(&r).unwrap_or_default(),
            Err(e) => panic!("the forwarded request is not JSON-RPC ({e}): {forward}"),
        }
    }
}

/// One RPC argument, as text and (if it is JSON) as a value, through every parser of
/// arguments and credentials that takes a client's words. Properties: what parses prints
/// back to text that parses to the same value; a backup path never resolves outside the
/// backup directory; no credential is accepted but the configured ones.
pub fn params(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let net = Network::Localnet;
    if let Ok(a) = Amount::parse_decimal(text) {
        assert_eq!(Amount::parse_decimal(&a.to_decimal_string()), Ok(a));
    }
    if let Ok(a) = Address::parse(text, net) {
        assert_eq!(Address::parse(&a.to_string(), net).ok(), Some(a));
    }
    if let Ok(h) = Hash32::from_hex(text) {
        assert_eq!(Hash32::from_hex(&h.to_hex()).ok(), Some(h));
    }
    let _ = crate::rpc::blockchain::parse_hash("blockhash", text);
    let _ = crate::rpc::rawbuild::decode_hex_tx(text);
    let _ = crate::rpc::network::parse_node(text);
    let _ = crate::rpc::network::parse_ban_of(text);
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if let Ok(a) = crate::rpc::rawbuild::parse_amount(&v) {
            // What the node prints for an amount reads back as that amount wherever a JSON
            // number can say it exactly, and is refused, never misread, elsewhere.
            let printed = crate::rpc::json::amount(a);
            match crate::rpc::rawbuild::parse_amount(&printed) {
                Ok(b) => assert_eq!(a, b, "{printed} was printed for {a:?}"),
                Err(_) => assert!(
                    a.atoms() as f64 / crate::types::ATOMS_PER_TIME as f64
                        >= crate::rpc::rawbuild::MAX_EXACT_NUMBER_TIME,
                    "the node cannot read back {printed}, which it printed for {a:?}"
                ),
            }
            if let Value::Number(n) = &v {
                exact_number(n, a);
            }
        }
        let _ = crate::rpc::address::address_list(v, net);
    }
    backup_path(text);
    credentials(data);
}

/// A JSON number read as an amount names that amount: its text, read exactly as decimal,
/// is the amount (to the atom) when it has at most 8 decimals.
fn exact_number(n: &serde_json::Number, a: Amount) {
    let text = n.to_string();
    if let Ok(exact) = Amount::parse_decimal(&text) {
        assert_eq!(exact, a, "the JSON number {text} was read as {a:?}");
    }
}

/// `backup` and `dumptxoutset` take a file name: it must land inside the backup directory.
fn backup_path(text: &str) {
    let dir = std::env::temp_dir().join(format!("timed-fuzz-backups-{}", std::process::id()));
    if let Ok(path) = crate::rpc::backup::resolve_in(&dir, text) {
        let base = match std::fs::canonicalize(&dir) {
            Ok(b) => b,
            Err(e) => panic!("the backup directory vanished: {e}"),
        };
        assert!(
            path.starts_with(&base),
            "{text:?} resolved to {}",
            path.display()
        );
    }
}

/// An `Authorization` header with the input as its Basic credentials, and the input as the
/// whole header: only the configured pairs get in.
fn credentials(data: &[u8]) {
    use base64::Engine;
    let creds = crate::rpc::auth::Credentials::new(
        "c00k1e",
        Some(("alice", "correct horse battery")),
        &["bob:salt$00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()],
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    for header in [format!("Basic {encoded}").into_bytes(), data.to_vec()] {
        let Ok(value) = http::HeaderValue::from_bytes(&header) else {
            continue;
        };
        if let Some(user) = creds.user(Some(&value)) {
            // The header is visible ASCII (it was read as text), so this slice is on a char
            // boundary and `trim` is the one `user` applies.
            let encoded = value.to_str().ok().and_then(|v| v.get(6..)).unwrap_or("");
            let given = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_default();
            assert!(
                given == b"__cookie__:c00k1e" || given == b"alice:correct horse battery",
                "{user} got in with {given:?}"
            );
        }
    }
}
