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
    // One agent for the process: it keeps connections alive, so a tool making many calls
    // does not leave a socket in TIME_WAIT per call.
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    let agent = AGENT.get_or_init(|| ureq::AgentBuilder::new().build());
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let reply: Value = match agent.post(url).timeout(timeout).send_json(body) {
        Ok(r) => r.into_json().map_err(|e| ClientError::Transport {
            url: redact(url),
            reason: e.to_string(),
        })?,
        Err(ureq::Error::Status(401, _)) => {
            return Err(ClientError::Transport {
                url: redact(url),
                reason: "the node refused the credentials (HTTP 401); pass its .cookie".into(),
            })
        }
        // jsonrpsee answers errors with HTTP 200; other statuses carry a body to read too.
        Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| ClientError::Transport {
            url: redact(url),
            reason: e.to_string(),
        })?,
        Err(e) => {
            return Err(ClientError::Transport {
                url: redact(url),
                reason: scrub(e.to_string(), url),
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

/// `url` with the credentials of a cookie file in it (`http://__cookie__:<hex>@host:port`),
/// read now: the node writes a new cookie at every start.
pub fn with_cookie(url: &str, cookie: &std::path::Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(cookie).map_err(|e| ClientError::Transport {
        url: url.to_string(),
        reason: format!(
            "cannot read the RPC cookie {}: {e} (is the node running?)",
            cookie.display()
        ),
    })?;
    let pair = text.trim();
    match url.split_once("://") {
        Some((scheme, rest)) => Ok(format!("{scheme}://{pair}@{rest}")),
        None => Ok(format!("http://{pair}@{url}")),
    }
}

/// `text` without the credentials `url` carries (ureq's errors quote the URL).
fn scrub(text: String, url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
    {
        Some((userinfo, _)) => text.replace(&format!("{userinfo}@"), ""),
        None => text,
    }
}

/// The URL without its credentials, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => url.to_string(),
    }
}
