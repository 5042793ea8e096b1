//! HTTP Basic authentication for the RPC server, as bitcoind does it: a `.cookie` file
//! (`__cookie__:<random hex>`, owner-only, rewritten at every start, removed at stop) and
//! optionally a configured user and password. Everything but `GET /health` needs one of them.
//!
//! A wrong or missing credential gets HTTP 401 after a short fixed delay, so guessing is slow
//! and timing says nothing about how close a guess was (comparisons are constant-time).

use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The user name of cookie authentication.
pub const COOKIE_USER: &str = "__cookie__";
pub use crate::client::COOKIE_FILE;
/// How long a refused request waits before its 401.
pub const REFUSAL_DELAY: Duration = Duration::from_millis(250);

/// The accepted `user:password` pairs, and salted `rpcauth` entries.
pub struct Credentials {
    /// Keyed digests of the accepted pairs: compared at one fixed length, so the time says
    /// nothing about a secret's length either.
    accepted: Vec<[u8; 32]>,
    /// This process's random key for those digests.
    key: [u8; 32],
    /// (user, salt, HMAC-SHA256(salt, password)).
    salted: Vec<(String, String, [u8; 32])>,
}

impl Credentials {
    /// Accepts the cookie's pair, `user:password` when both are configured, and every
    /// well-formed `user:salt$hash` entry (malformed ones are refused by the config check).
    pub fn new(
        cookie: &str,
        user_password: Option<(&str, &str)>,
        rpc_auth: &[String],
    ) -> Credentials {
        let key: [u8; 32] = rand::random();
        let digest = |pair: String| *blake3::keyed_hash(&key, pair.as_bytes()).as_bytes();
        let mut accepted = vec![digest(format!("{COOKIE_USER}:{cookie}"))];
        if let Some((u, p)) = user_password {
            accepted.push(digest(format!("{u}:{p}")));
        }
        let salted = rpc_auth
            .iter()
            .filter_map(|entry| {
                let (user, rest) = entry.split_once(':')?;
                let (salt, hash) = rest.split_once('$')?;
                let hash: [u8; 32] = hex::decode(hash).ok()?.try_into().ok()?;
                Some((user.to_string(), salt.to_string(), hash))
            })
            .collect();
        Credentials {
            accepted,
            key,
            salted,
        }
    }

    /// Whether `user:password` matches an `rpcauth` entry (Bitcoin's scheme: the hash is
    /// HMAC-SHA256 keyed by the salt over the password).
    fn salted_allows(&self, given: &[u8]) -> bool {
        use hmac::Mac;
        let Some(colon) = given.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&given[..colon], &given[colon + 1..]);
        self.salted.iter().fold(false, |ok, (u, salt, hash)| {
            let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(salt.as_bytes()) else {
                return ok;
            };
            mac.update(password);
            let computed: [u8; 32] = mac.finalize().into_bytes().into();
            ok | (bool::from(u.as_bytes().ct_eq(user)) & bool::from(computed.ct_eq(hash)))
        })
    }

    /// Whether an `Authorization` header value carries accepted credentials.
    pub fn allows(&self, header: Option<&http::HeaderValue>) -> bool {
        self.user(header).is_some()
    }

    /// The user name of an `Authorization` header value that carries accepted credentials
    /// (`__cookie__` for the cookie): what per-user rate limits and method lists key on.
    pub fn user(&self, header: Option<&http::HeaderValue>) -> Option<String> {
        let value = header.and_then(|h| h.to_str().ok())?;
        let encoded = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))?;
        let given = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        // Check every pair, so the time does not depend on which one matched.
        let given_digest = *blake3::keyed_hash(&self.key, &given).as_bytes();
        let plain = self
            .accepted
            .iter()
            .fold(false, |ok, want| ok | bool::from(want.ct_eq(&given_digest)));
        if !(plain | self.salted_allows(&given)) {
            return None;
        }
        // Every accepted pair has a colon (the cookie's, `rpc_user`'s, `rpc_auth`'s).
        let colon = given.iter().position(|&b| b == b':')?;
        Some(String::from_utf8_lossy(&given[..colon]).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(pair: &str) -> http::HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(pair);
        http::HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    #[test]
    fn cookie_and_configured_pairs_pass_others_do_not() {
        // Made by Bitcoin's share/rpcauth/rpcauth.py for bob / "correct horse".
        let salt = "f1c5d2cf0a5b8bc2e1bf6b1ab5b3c8a9";
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(salt.as_bytes()).unwrap();
        hmac::Mac::update(&mut mac, b"correct horse");
        let hash = hex::encode(hmac::Mac::finalize(mac).into_bytes());
        let c = Credentials::new(
            "abc",
            Some(("alice", "pw")),
            &[format!("bob:{salt}${hash}")],
        );
        assert!(c.allows(Some(&basic("bob:correct horse"))));
        assert_eq!(
            c.user(Some(&basic("bob:correct horse"))).as_deref(),
            Some("bob")
        );
        assert_eq!(
            c.user(Some(&basic("__cookie__:abc"))).as_deref(),
            Some("__cookie__")
        );
        assert_eq!(c.user(Some(&basic("alice:pw"))).as_deref(), Some("alice"));
        assert_eq!(c.user(Some(&basic("alice:pX"))), None);
        assert!(!c.allows(Some(&basic("bob:correct horsf"))));
        assert!(!c.allows(Some(&basic("bobby:correct horse"))));
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
