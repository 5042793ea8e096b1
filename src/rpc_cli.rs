//! `timed rpc <method> [params...]`: bitcoin-cli for timed. Each parameter is sent as JSON if
//! it parses as JSON, else as a string; `--named` (or bitcoin-cli's `-named`) sends
//! `name=value` pairs as an object. The result prints raw if it is a string, as pretty JSON
//! otherwise; a node error prints bitcoin-cli's `error code: N` / `error message:` block.
//!
//! ```text
//! args ─► method + params (array | object) ─► connect (URL, credentials) ─► call ─► stdout
//!                                                                        └─ error ─► stderr, 1
//! ```

use crate::cli::RpcCallArgs;
use crate::config::Overrides;
use crate::rpc::client::ClientError;
use crate::wallet::command::print_line;
use crate::wallet::connect::{self, ConnectError, CALL_TIMEOUT};
use serde_json::{Map, Value};
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum RpcCliError {
    #[error("give the method to call, such as `timed rpc getblockcount`")]
    NoMethod,
    #[error("named parameter {0:?} needs the form name=value")]
    NotNamed(String),
    #[error("named parameter {0:?} is given twice")]
    Duplicate(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// One parameter as bitcoin-cli sends it: JSON if it parses, else the text as a string.
pub fn param(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The method and its parameters, from the words after `timed rpc`.
pub fn request(words: &[String], named: bool) -> Result<(String, Value), RpcCliError> {
    let (named, words) = match words.split_first() {
        Some((first, rest)) if first == "-named" => (true, rest),
        _ => (named, words),
    };
    let (method, params) = words.split_first().ok_or(RpcCliError::NoMethod)?;
    if !named {
        return Ok((
            method.clone(),
            Value::Array(params.iter().map(|p| param(p)).collect()),
        ));
    }
    let mut object = Map::new();
    for p in params {
        let (name, value) = p
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .ok_or_else(|| RpcCliError::NotNamed(p.clone()))?;
        if object.insert(name.to_string(), param(value)).is_some() {
            return Err(RpcCliError::Duplicate(name.to_string()));
        }
    }
    Ok((method.clone(), Value::Object(object)))
}

/// How bitcoin-cli shows a result: strings bare, `null` as nothing, the rest as pretty JSON.
pub fn render(result: &Value) -> Option<String> {
    match result {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        // Pretty-printing a `Value` cannot fail (its keys are strings).
        other => Some(serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string())),
    }
}

/// Runs `timed rpc`; the process's exit code (1 on any error, as the brief of bitcoin-cli
/// users expects: a node error's own code does not fit an exit status).
pub fn run(globals: &Overrides, args: &RpcCallArgs) -> ExitCode {
    let outcome = request(&args.call, args.named).and_then(|(method, params)| {
        let node = connect::connect(globals, &args.rpc)?;
        node.endpoint
            .call(&method, params, CALL_TIMEOUT)
            .map_err(|e| RpcCliError::Connect(e.into()))
    });
    match outcome {
        Ok(result) => match render(&result).map(|text| print_line(format_args!("{text}"))) {
            Some(Err(e)) => {
                eprintln!("error: cannot write the output: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        },
        Err(RpcCliError::Connect(ConnectError::Client(ClientError::Rpc {
            code, message, ..
        }))) => {
            eprintln!("error code: {code}\nerror message:\n{message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn params_are_json_if_they_parse_else_strings() {
        let (m, p) = request(&words(&["getblock", "00ab", "2"]), false).unwrap();
        assert_eq!(m, "getblock");
        assert_eq!(p, json!(["00ab", 2]));
        let (_, p) = request(&words(&["x", "true", "[1,\"a\"]", "\"12\"", "-1"]), false).unwrap();
        assert_eq!(p, json!([true, [1, "a"], "12", -1]));
        assert!(matches!(request(&[], false), Err(RpcCliError::NoMethod)));
    }

    #[test]
    fn named_params_become_an_object() {
        let (m, p) = request(
            &words(&["-named", "getrawtransaction", "txid=ab12", "verbose=true"]),
            false,
        )
        .unwrap();
        assert_eq!(m, "getrawtransaction");
        assert_eq!(p, json!({"txid": "ab12", "verbose": true}));
        let (_, p) = request(&words(&["m", "a=x=y"]), true).unwrap();
        assert_eq!(p, json!({"a": "x=y"}));
        assert!(matches!(
            request(&words(&["m", "novalue"]), true),
            Err(RpcCliError::NotNamed(_))
        ));
        assert!(matches!(
            request(&words(&["m", "a=1", "a=2"]), true),
            Err(RpcCliError::Duplicate(_))
        ));
    }

    #[test]
    fn results_render_like_bitcoin_cli() {
        assert_eq!(render(&json!("00ff")), Some("00ff".into()));
        assert_eq!(render(&Value::Null), None);
        assert_eq!(render(&json!(12)), Some("12".into()));
        assert_eq!(render(&json!({"a": 1})), Some("{\n  \"a\": 1\n}".into()));
    }
}
