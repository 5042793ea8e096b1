//! Per-user RPC method lists, with bitcoind's `-rpcwhitelist` / `-rpcwhitelistdefault`
//! semantics, so an operator can hand a monitoring tool credentials that read but cannot
//! `stop` the node or write files with `backup`.
//!
//! - An entry is `user:method,method,...` (commas or spaces between methods). A user with
//!   several entries may call only the methods every one of them lists (their intersection).
//! - `rpc_whitelist_default` (default: true as soon as any entry is set): a user without an
//!   entry may call nothing; set it to false to let such users call everything.
//! - A refused call gets bitcoind's answer: HTTP 403 Forbidden with an empty body (a batch is
//!   refused whole if any call in it is refused); on a WebSocket, where there is no HTTP status
//!   per call, a JSON-RPC error naming the method.
//!
//! The cookie's user is `__cookie__`, so with the default a whitelist for other users also
//! shuts out the cookie unless it has an entry of its own (as in bitcoind).

use super::catalog;
use std::collections::{BTreeMap, BTreeSet};

/// Most entries accepted (a config key, so bounded like the others).
pub const MAX_WHITELIST_ENTRIES: usize = 1_000;

/// Who may call what. The default value allows everyone everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Whitelist {
    /// Each listed user's allowed methods (the intersection of its entries).
    users: BTreeMap<String, BTreeSet<String>>,
    /// Whether users without an entry are refused everything.
    default_deny: bool,
}

/// Whether a name is a method or a subscription the server offers.
fn known_method(name: &str) -> bool {
    catalog::METHODS.iter().any(|m| m.name == name)
        || catalog::SUBSCRIPTIONS
            .iter()
            .any(|(sub, _, unsub, _, _)| *sub == name || *unsub == name)
}

impl Whitelist {
    /// Parses `rpc_whitelist` entries; `default` is `rpc_whitelist_default` if set. On error
    /// returns the entry and what is wrong with it.
    pub fn parse(entries: &[String], default: Option<bool>) -> Result<Whitelist, (String, String)> {
        if entries.len() > MAX_WHITELIST_ENTRIES {
            return Err((
                format!("{} entries", entries.len()),
                format!("at most {MAX_WHITELIST_ENTRIES}"),
            ));
        }
        let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in entries {
            let (user, list) = entry.split_once(':').unwrap_or((entry.as_str(), ""));
            if user.is_empty() {
                return Err((
                    entry.clone(),
                    "user:method,method,... with a non-empty user name".into(),
                ));
            }
            let methods: BTreeSet<String> = list
                .split([',', ' '])
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(unknown) = methods.iter().find(|m| !known_method(m)) {
                return Err((
                    entry.clone(),
                    format!("{unknown:?} is not an RPC method of timed (see `timed rpc help`)"),
                ));
            }
            match users.get_mut(user) {
                Some(existing) => existing.retain(|m| methods.contains(m)),
                None => {
                    users.insert(user.to_string(), methods);
                }
            }
        }
        let default_deny = default.unwrap_or(!entries.is_empty());
        Ok(Whitelist {
            users,
            default_deny,
        })
    }

    /// Whether any call can be refused at all (nothing to check otherwise).
    pub fn is_active(&self) -> bool {
        self.default_deny || !self.users.is_empty()
    }

    /// Whether `user` may call `method`.
    pub fn allows(&self, user: &str, method: &str) -> bool {
        match self.users.get(user) {
            Some(methods) => methods.contains(method),
            None => !self.default_deny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], default: Option<bool>) -> Whitelist {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        Whitelist::parse(&entries, default).unwrap()
    }

    #[test]
    fn bitcoind_semantics() {
        let none = list(&[], None);
        assert!(!none.is_active());
        assert!(none.allows("anyone", "stop"));

        // Entries set: others get nothing, unless the default is turned off.
        let w = list(&["monitor:getblockcount, getblockchaininfo"], None);
        assert!(w.allows("monitor", "getblockcount"));
        assert!(w.allows("monitor", "getblockchaininfo"));
        assert!(!w.allows("monitor", "stop"));
        assert!(!w.allows("__cookie__", "getblockcount"));
        let open = list(&["monitor:getblockcount"], Some(false));
        assert!(open.allows("__cookie__", "stop"));
        assert!(!open.allows("monitor", "stop"));

        // Default on with no entries: nobody may call anything.
        let closed = list(&[], Some(true));
        assert!(closed.is_active());
        assert!(!closed.allows("__cookie__", "getblockcount"));

        // Several entries for one user intersect; an entry without methods allows none.
        let w = list(
            &["a:getblockcount,getblockhash", "a:getblockhash,stop", "b"],
            None,
        );
        assert!(w.allows("a", "getblockhash"));
        assert!(!w.allows("a", "getblockcount"));
        assert!(!w.allows("a", "stop"));
        assert!(!w.allows("b", "getblockhash"));
    }

    #[test]
    fn unknown_methods_and_empty_users_are_refused() {
        let bad = Whitelist::parse(&["a:getblockcount,getblokhash".into()], None).unwrap_err();
        assert!(bad.1.contains("getblokhash"), "{bad:?}");
        assert!(Whitelist::parse(&[":getblockcount".into()], None).is_err());
    }
}
