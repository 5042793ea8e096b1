//! A small blocking JSON-RPC client for the node's own tools (`timed localnet`) and tests.

use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{method} failed with code {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("{method}: malformed reply: {reply}")]
    Malformed { method: String, reply: String },
}

/// Calls `method` with positional `params` at `url`; the `result`, or the error the node gave.
pub fn call(
    url: &str,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let reply: Value = match agent.post(url).send_json(body) {
        Ok(r) => r.into_json().map_err(|e| ClientError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?,
        // jsonrpsee answers errors with HTTP 200; other statuses carry a body to read too.
        Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| ClientError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?,
        Err(e) => {
            return Err(ClientError::Transport {
                url: url.to_string(),
                reason: e.to_string(),
            })
        }
    };
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        return Err(ClientError::Rpc {
            method: method.to_string(),
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    reply
        .get("result")
        .cloned()
        .ok_or_else(|| ClientError::Malformed {
            method: method.to_string(),
            reply: reply.to_string(),
        })
}
