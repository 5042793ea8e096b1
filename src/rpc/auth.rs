//! HTTP Basic authentication for the RPC server, as bitcoind does it: a `.cookie` file
//! (`__cookie__:<random hex>`, owner-only, rewritten at every start, removed at stop) and
//! optionally a configured user and password. Everything but `GET /health` needs one of them.
//!
//! A wrong or missing credential gets HTTP 401 after a short fixed delay, so guessing is slow
//! and timing says nothing about how close a guess was (comparisons are constant-time).

use base64::Engine;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The user name of cookie authentication.
pub const COOKIE_USER: &str = "__cookie__";
/// The cookie file's name in the data directory.
pub const COOKIE_FILE: &str = ".cookie";
/// How long a refused request waits before its 401.
pub const REFUSAL_DELAY: Duration = Duration::from_millis(250);

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The accepted `user:password` pairs.
pub struct Credentials {
    accepted: Vec<Vec<u8>>,
}

impl Credentials {
    /// Accepts the cookie's pair, and `user:password` when both are configured.
    pub fn new(cookie: &str, user_password: Option<(&str, &str)>) -> Credentials {
        let mut accepted = vec![format!("{COOKIE_USER}:{cookie}").into_bytes()];
        if let Some((u, p)) = user_password {
            accepted.push(format!("{u}:{p}").into_bytes());
        }
        Credentials { accepted }
    }

    /// Whether an `Authorization` header value carries accepted credentials.
    pub fn allows(&self, header: Option<&http::HeaderValue>) -> bool {
        let Some(value) = header.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        // Check every pair, so the time does not depend on which one matched.
        self.accepted.iter().fold(false, |ok, want| {
            ok | bool::from(want.as_slice().ct_eq(&given))
        })
    }
}

/// Writes a new cookie to `<datadir>/.cookie` (owner-only, atomically) and returns its secret.
pub fn write_cookie(datadir: &Path) -> std::io::Result<(String, PathBuf)> {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let path = datadir.join(COOKIE_FILE);
    let tmp = datadir.join(".cookie.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(format!("{COOKIE_USER}:{secret}").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok((secret, path))
}

/// The tower layer that puts [`Auth`] in front of the RPC service.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Credentials>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            creds: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    creds: Arc<Credentials>,
}

fn respond(status: http::StatusCode, body: &'static str) -> HttpResponse {
    let mut r = HttpResponse::new(HttpBody::from(body));
    *r.status_mut() = status;
    if status == http::StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Basic realm=\"jsonrpc\""),
        );
    }
    r
}

impl<S> tower::Service<HttpRequest> for Auth<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        if req.uri().path() == "/health" && req.method() == http::Method::GET {
            return Box::pin(async { Ok(respond(http::StatusCode::OK, "OK\n")) });
        }
        if self
            .creds
            .allows(req.headers().get(http::header::AUTHORIZATION))
        {
            let fut = self.inner.call(req);
            return Box::pin(async move { fut.await.map_err(Into::into) });
        }
        Box::pin(async {
            tokio::time::sleep(REFUSAL_DELAY).await;
            Ok(respond(
                http::StatusCode::UNAUTHORIZED,
                "authentication required\n",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> http::HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(pair);
        http::HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    #[test]
    fn cookie_and_configured_pairs_pass_others_do_not() {
        let c = Credentials::new("abc", Some(("alice", "pw")));
        assert!(c.allows(Some(&basic("__cookie__:abc"))));
        assert!(c.allows(Some(&basic("alice:pw"))));
        assert!(!c.allows(Some(&basic("__cookie__:abd"))));
        assert!(!c.allows(Some(&basic("alice:"))));
        assert!(!c.allows(None));
        assert!(!c.allows(Some(&http::HeaderValue::from_static("Bearer x"))));
        assert!(!c.allows(Some(&http::HeaderValue::from_static("Basic !!!"))));
    }

    #[test]
    fn the_cookie_is_written_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, path) = write_cookie(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("__cookie__:{secret}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, _) = write_cookie(dir.path()).unwrap();
        assert_ne!(secret, again, "a new secret at every start");
    }
}
