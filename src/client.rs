//! A small blocking JSON-RPC client for the node's own tools (`timed wallet`, `timed rpc`,
//! `timed localnet`, the load generator) and tests.
//!
//! ```text
//! Endpoint { url, credentials, hint } ──call(method, params)──► HTTP POST (Basic auth)
//!      ▲                                                          │
//!  a URL string (legacy: credentials inside it)      result | ClientError a person can act on
//! ```
//!
//! Failures are sorted by what the user has to do about them: start the node (unreachable),
//! fix the credentials (HTTP 401), or read the node's own error (Bitcoin code and message).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest cookie file read: the node writes about 80 bytes.
const MAX_COOKIE_BYTES: u64 = 4096;
/// The cookie file's name in the data directory: the node writes it, clients read it.
pub const COOKIE_FILE: &str = ".cookie";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node at {url}: {reason}{hint}")]
    Unreachable {
        url: String,
        reason: String,
        /// How to start the node or point at it, when the caller knows (may be empty).
        hint: String,
    },
    #[error(
        "the node at {url} refused the credentials (HTTP 401; sent {sent}): check --rpc-cookie \
         / --rpc-user"
    )]
    Unauthorized {
        url: String,
        /// Which credentials were sent (never the secret itself).
        sent: String,
    },
    #[error("talking to the node at {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("the node answered {method} with error code {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("{method}: malformed reply: {reply}")]
    Malformed { method: String, reply: String },
    #[error("cannot read the RPC cookie {}: {reason}", path.display())]
    Cookie { path: PathBuf, reason: String },
    #[error("{url:?} is not a usable RPC URL: {reason}")]
    BadUrl { url: String, reason: String },
}

/// HTTP Basic credentials and where they came from; the password never reaches a message.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
    source: String,
}

impl Credentials {
    /// `source` says where they came from, for messages (such as `--rpc-user alice`).
    pub fn new(user: String, password: String, source: String) -> Credentials {
        Credentials {
            user,
            password,
            source,
        }
    }

    /// The `user:password` pair in a cookie file, read now: the node writes a new cookie at
    /// every start.
    pub fn from_cookie(path: &Path) -> Result<Credentials, ClientError> {
        let cookie_err = |reason: String| ClientError::Cookie {
            path: path.to_path_buf(),
            reason,
        };
        let text = crate::config::read_bounded(path, MAX_COOKIE_BYTES).map_err(|e| match e {
            crate::config::ReadFileError::Read { source, .. } => cookie_err(format!(
                "{source} (the node writes it at every start: is it running with this data \
                 directory?)"
            )),
            too_large => cookie_err(too_large.to_string()),
        })?;
        let (user, password) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| cookie_err("expected user:password".into()))?;
        Ok(Credentials::new(
            user.to_string(),
            password.to_string(),
            format!("the cookie {}", path.display()),
        ))
    }

    fn header(&self) -> String {
        use base64::Engine;
        let pair = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A node's RPC address, the credentials to send, and what to tell a user who cannot reach it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    url: String,
    credentials: Option<Credentials>,
    /// Appended to an "unreachable" message, such as `; is timed running? ...`.
    hint: String,
    /// Said in a 401 message when no credentials were sent (such as which cookie was missing).
    no_credentials: String,
}

impl Endpoint {
    /// An endpoint whose URL may carry `user:password@` (sent as HTTP Basic by the HTTP client).
    pub fn from_url(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            credentials: None,
            hint: String::new(),
            no_credentials: if url_has_credentials(url) {
                "the credentials in the URL".into()
            } else {
                "no credentials".into()
            },
        }
    }

    /// Sends `credentials` (over any in the URL).
    pub fn with_credentials(mut self, credentials: Credentials) -> Endpoint {
        self.credentials = Some(credentials);
        self
    }

    /// What an "unreachable" message ends with.
    pub fn with_hint(mut self, hint: String) -> Endpoint {
        self.hint = hint;
        self
    }

    /// What a 401 message says was sent when no credentials were given.
    pub fn with_no_credentials_note(mut self, note: String) -> Endpoint {
        if self.credentials.is_none() {
            self.no_credentials = note;
        }
        self
    }

    /// Whether the URL itself carries `user:password@`.
    pub fn has_url_credentials(&self) -> bool {
        url_has_credentials(&self.url)
    }

    /// The URL without credentials, for messages.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    fn sent(&self) -> String {
        match &self.credentials {
            Some(c) => c.source.clone(),
            None => self.no_credentials.clone(),
        }
    }

    /// Calls `method` with `params` (an array, or an object for named parameters); the
    /// `result`, or the error the node gave.
    pub fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        // One agent for the process: it keeps connections alive, so a tool making many calls
        // does not leave a socket in TIME_WAIT per call.
        static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
        let agent = AGENT.get_or_init(|| ureq::AgentBuilder::new().build());
        let url = self.display_url();
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut request = agent.post(&self.url).timeout(timeout);
        if let Some(c) = &self.credentials {
            request = request.set("Authorization", &c.header());
        }
        let unreadable = |e: std::io::Error| ClientError::Transport {
            url: url.clone(),
            reason: format!("unreadable reply: {e}"),
        };
        let reply: Value = match request.send_json(body) {
            Ok(r) => r.into_json().map_err(unreadable)?,
            Err(ureq::Error::Status(401, _)) => {
                return Err(ClientError::Unauthorized {
                    url,
                    sent: self.sent(),
                })
            }
            // jsonrpsee answers errors with HTTP 200; other statuses carry a body to read too.
            Err(ureq::Error::Status(status, r)) => {
                r.into_json().map_err(|e| ClientError::Transport {
                    url: url.clone(),
                    reason: format!("HTTP {status} without a JSON-RPC reply: {e}"),
                })?
            }
            Err(ureq::Error::Transport(t)) => return Err(self.transport_error(&t, timeout)),
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

    fn transport_error(&self, t: &ureq::Transport, timeout: Duration) -> ClientError {
        let url = self.display_url();
        // ureq's messages quote the URL, credentials and all.
        let cause = io_cause(t);
        let reason = match (t.message(), &cause) {
            (Some(m), Some(io)) => format!("{m}: {io}"),
            (Some(m), None) => m.to_string(),
            (None, Some(io)) => io.to_string(),
            (None, None) => t.to_string(),
        };
        let reason = scrub(reason, &self.url);
        match t.kind() {
            ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                ClientError::BadUrl { url, reason }
            }
            ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => ClientError::Unreachable {
                url,
                reason,
                hint: self.hint.clone(),
            },
            ureq::ErrorKind::Io
                if cause.is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    )
                }) =>
            {
                ClientError::Transport {
                    url,
                    reason: format!("no reply within {} s", timeout.as_secs()),
                }
            }
            _ => ClientError::Transport { url, reason },
        }
    }
}

/// The operating system's error under a transport failure, if there is one.
fn io_cause(t: &ureq::Transport) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = e.source();
    }
    None
}

/// Anything that answers JSON-RPC calls: an [`Endpoint`], or a URL string (credentials inside).
pub trait Rpc {
    fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError>;
}

impl Rpc for Endpoint {
    fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError> {
        Endpoint::call(self, method, params, timeout)
    }
}

impl Rpc for str {
    fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError> {
        Endpoint::from_url(self).call(method, params, timeout)
    }
}

impl Rpc for String {
    fn call(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ClientError> {
        Endpoint::from_url(self).call(method, params, timeout)
    }
}

/// Calls `method` with positional `params` at `url`; the `result`, or the error the node gave.
pub fn call(
    url: &str,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    Endpoint::from_url(url).call(method, params, timeout)
}

/// `url` with the credentials of a cookie file in it (`http://__cookie__:<hex>@host:port`),
/// read now: the node writes a new cookie at every start.
pub fn with_cookie(url: &str, cookie: &Path) -> Result<String, ClientError> {
    let c = Credentials::from_cookie(cookie)?;
    let pair = format!("{}:{}", c.user, c.password);
    match url.split_once("://") {
        Some((scheme, rest)) => Ok(format!("{scheme}://{pair}@{rest}")),
        None => Ok(format!("http://{pair}@{url}")),
    }
}

fn url_has_credentials(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(_, rest)| rest.split('/').next().is_some_and(|h| h.contains('@')))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_secrets() {
        let e = Endpoint::from_url("http://__cookie__:abcd@127.0.0.1:1");
        assert_eq!(e.display_url(), "http://127.0.0.1:1");
        assert_eq!(e.sent(), "the credentials in the URL");
        let c = Credentials::new("alice".into(), "s3cret".into(), "--rpc-user alice".into());
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Endpoint::from_url("http://127.0.0.1:1").with_credentials(c);
        assert_eq!(e.sent(), "--rpc-user alice");
    }

    #[test]
    fn cookie_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".cookie");
        let missing = Credentials::from_cookie(&path).unwrap_err();
        assert!(matches!(missing, ClientError::Cookie { .. }), "{missing}");
        std::fs::write(&path, "__cookie__:0123\n").unwrap();
        let c = Credentials::from_cookie(&path).unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("__cookie__", "0123")
        );
        assert_eq!(
            with_cookie("http://127.0.0.1:5", &path).unwrap(),
            "http://__cookie__:0123@127.0.0.1:5"
        );
        std::fs::write(&path, "no-separator").unwrap();
        assert!(Credentials::from_cookie(&path).is_err());
    }

    #[test]
    fn a_closed_port_is_unreachable_with_the_hint() {
        // Bind then drop: nothing listens on the port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let e = Endpoint::from_url(&format!("http://127.0.0.1:{port}"))
            .with_hint("; start it".into())
            .call("getblockcount", json!([]), Duration::from_secs(5))
            .unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().ends_with("; start it"), "{e}");
    }
}
