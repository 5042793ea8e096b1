//! `timed rpc <method> [params...]`: bitcoin-cli for timed. Each parameter is sent as JSON if
//! it parses as JSON, else as a string; `--named` (or bitcoin-cli's `-named`) sends
//! `name=value` pairs as an object. The result prints raw if it is a string, as pretty JSON
//! otherwise; a node error prints bitcoin-cli's `error code: N` / `error message:` block and
//! exits with the status bitcoin-cli gives it (see [`exit_status`]), so a script can tell
//! "warming up" (28) from "no such block" (8) without parsing text.
//!
//! ```text
//! args ─► method + params (array | object) ─► connect (URL, credentials) ─► call ─► stdout, 0
//!                                                         node error ─► stderr, |code| mod 256
//!                                         anything else (unreachable, 401, usage) ─► stderr, 1
//! ```

use crate::cli::RpcCallArgs;
use crate::client::ClientError;
use crate::config::Overrides;
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

/// The exit status for a node's error `code`, as a shell sees bitcoin-cli's: it returns
/// `abs(code)` from `main`, of which the system keeps the low 8 bits (-28 → 28, -8 → 8,
/// -32601 → 89). Scripts written against bitcoin-cli branch on these. Where bitcoin-cli's
/// status would wrap to 0 (a code of 0 or a multiple of 256, which no Bitcoin code is) this
/// gives 1, so an error never reads as success.
pub fn exit_status(code: i64) -> u8 {
    match (code.unsigned_abs() % 256) as u8 {
        0 => 1,
        status => status,
    }
}

/// Runs `timed rpc`; the process's exit code: 0, the node error's [`exit_status`], or 1 for
/// every other failure (no connection, refused credentials, bad arguments), as bitcoin-cli.
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
            ExitCode::from(exit_status(code))
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
    fn node_errors_exit_with_bitcoin_clis_status() {
        assert_eq!(exit_status(-28), 28);
        assert_eq!(exit_status(-8), 8);
        assert_eq!(exit_status(-5), 5);
        assert_eq!(exit_status(-1), 1);
        // The low 8 bits of 32601 (0x7f59), as a shell shows bitcoin-cli's `return 32601`.
        assert_eq!(exit_status(-32601), 89);
        assert_eq!(exit_status(-32700), 188);
        // Never 0: an error must not read as success.
        assert_eq!(exit_status(0), 1);
        assert_eq!(exit_status(-256), 1);
        assert_eq!(exit_status(i64::MIN), 1);
        assert_eq!(exit_status(300), 44);
    }

    #[test]
    fn results_render_like_bitcoin_cli() {
        assert_eq!(render(&json!("00ff")), Some("00ff".into()));
        assert_eq!(render(&Value::Null), None);
        assert_eq!(render(&json!(12)), Some("12".into()));
        assert_eq!(render(&json!({"a": 1})), Some("{\n  \"a\": 1\n}".into()));
    }
}
