//! Precedence, defaults, every validation error, `--print-config`'s text and the shipped
//! config files.

use super::genesis::{GenesisAllocation, GenesisMasternodeEntry};
use super::*;
use crate::types::{Address, SecretKey, Tier};

/// The field names serde knows for `T` (what `deny_unknown_fields` accepts), captured from
/// the `deserialize_struct` call its derived `Deserialize` makes.
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error, Visitor};
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Capture<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Error::custom("captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

/// A directory with a valid localnet genesis file and a config file of `text`.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(text: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let operator = SecretKey::from_bytes(&[7; 32]);
    let addr = Address::from_public_key(Network::Localnet, &operator.public_key()).to_string();
    let genesis = GenesisFile {
        network: Network::Localnet,
        timestamp_ms: 1,
        block_interval_ms: 750,
        slot_engine_voters: None,
        allocations: vec![GenesisAllocation {
            address: addr.clone(),
            amount: "5".into(),
        }],
        masternodes: vec![GenesisMasternodeEntry::new(
            Tier::Bronze,
            &operator,
            addr,
            "127.0.0.1:24200".into(),
        )],
    };
    std::fs::write(
        dir.path().join("genesis.json"),
        serde_json::to_string(&genesis).unwrap(),
    )
    .unwrap();
    let config = dir.path().join("timed.toml");
    std::fs::write(
        &config,
        format!("network = \"localnet\"\ngenesis = \"genesis.json\"\n{text}\n"),
    )
    .unwrap();
    Setup { dir, config }
}

impl Setup {
    fn over(&self) -> Overrides {
        Overrides {
            config: Some(self.config.clone()),
            ..Overrides::default()
        }
    }
}

#[test]
fn keys_lists_every_field_of_the_config_file() {
    let mut keys = KEYS.to_vec();
    let mut fields = struct_fields::<NodeConfig>().to_vec();
    assert!(!fields.is_empty());
    keys.sort_unstable();
    fields.sort_unstable();
    assert_eq!(keys, fields);
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let s = setup(
        "listen = \"127.0.0.1:30000\"\nrpc_bind = \"127.0.0.1:30001\"\n\
         peers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nmax_inbound = 5\ndatadir = \"data\"",
    );
    let mut over = s.over();
    over.keys.rpc_bind = Some("127.0.0.1:31001".into());
    over.keys.peers = Some(vec!["127.0.0.1:9".into()]);
    over.keys.max_outbound = Some(7);
    over.from_env = vec!["peers", "max_outbound"];
    let eff = Effective::gather(&over).unwrap();
    assert_eq!(eff.origin("rpc_bind"), Origin::Flag);
    assert_eq!(eff.origin("peers"), Origin::Env);
    assert_eq!(eff.origin("max_outbound"), Origin::Env);
    assert_eq!(eff.origin("listen"), Origin::File);
    assert_eq!(eff.origin("max_inbound"), Origin::File);
    assert_eq!(eff.origin("fast_sync_after"), Origin::Default);
    assert_eq!(eff.origin("metrics_bind"), Origin::Default);

    let p = eff.validate().unwrap();
    assert_eq!(p.rpc_bind, "127.0.0.1:31001".parse().unwrap());
    // A list from a higher layer replaces the file's whole.
    assert_eq!(p.peers, vec!["127.0.0.1:9".to_string()]);
    assert_eq!(p.limits.max_inbound, 5);
    assert_eq!(p.limits.max_outbound, 7);
    let defaults = crate::network::peers::PeerLimits::default();
    assert_eq!(p.limits.max_inbound_per_ip, defaults.max_inbound_per_ip);
    assert_eq!(
        p.limits.max_inbound_per_subnet,
        defaults.max_inbound_per_subnet
    );
    assert_eq!(p.listen, Some("127.0.0.1:30000".parse().unwrap()));
    // Defaults derived from other keys: advertise from listen, metrics from the RPC port
    // that won, the key file inside the data directory.
    assert_eq!(p.advertise, "127.0.0.1:30000");
    assert_eq!(p.metrics_bind, Some("127.0.0.1:31002".parse().unwrap()));
    // The file's relative paths are relative to the file.
    assert_eq!(p.datadir, s.dir.path().join("data"));
    assert_eq!(p.node_key, s.dir.path().join("data").join("node.key"));
    assert_eq!(p.fast_sync_after, DEFAULT_FAST_SYNC_AFTER);
    assert_eq!(p.block_interval_ms, 750);
    assert_eq!(p.log_level, DEFAULT_LOG_LEVEL);
    assert_eq!(p.log_format, LogFormat::Text);
}

#[test]
fn network_defaults_follow_the_network_that_won() {
    let s = setup("");
    let mut over = s.over();
    over.keys.datadir = Some(PathBuf::from("rel/dir"));
    let eff = Effective::gather(&over).unwrap();
    let p = eff.validate().unwrap();
    // A flag's relative path is the caller's, relative to the working directory.
    assert_eq!(p.datadir, PathBuf::from("rel/dir"));
    let (p2p, rpc) = default_ports(Network::Localnet);
    assert_eq!(p.listen, Some(format!("0.0.0.0:{p2p}").parse().unwrap()));
    // A wildcard listen address is not announced.
    assert_eq!(p.advertise, "");
    assert_eq!(p.rpc_bind, format!("127.0.0.1:{rpc}").parse().unwrap());

    // No config file at all: mainnet's defaults, and its missing genesis is the one error.
    let eff = Effective::gather(&Overrides::default()).unwrap();
    assert_eq!(eff.values.network, Some(Network::Mainnet));
    assert_eq!(eff.values.listen.as_deref(), Some("0.0.0.0:24000"));
    assert_eq!(eff.values.rpc_bind.as_deref(), Some("127.0.0.1:24001"));
    assert_eq!(eff.values.datadir, Some(default_datadir(Network::Mainnet)));
    assert!(matches!(
        eff.validate(),
        Err(ConfigError::NoGenesis(Network::Mainnet))
    ));
}

#[test]
fn systemd_state_directory_is_the_default_datadir_only() {
    let s = setup("");
    let mut over = s.over();
    over.state_directory = Some(PathBuf::from("/var/lib/timed"));
    let eff = Effective::gather(&over).unwrap();
    assert_eq!(eff.origin("datadir"), Origin::StateDirectory);
    assert_eq!(eff.validate().unwrap().datadir, Path::new("/var/lib/timed"));

    let s = setup("datadir = \"/srv/timed\"");
    let mut over = s.over();
    over.state_directory = Some(PathBuf::from("/var/lib/timed"));
    let eff = Effective::gather(&over).unwrap();
    assert_eq!(eff.origin("datadir"), Origin::File);
    assert_eq!(eff.validate().unwrap().datadir, Path::new("/srv/timed"));

    use std::ffi::OsString;
    assert_eq!(
        state_directory(Some(OsString::from("/var/lib/a:/var/lib/b"))),
        Some(PathBuf::from("/var/lib/a"))
    );
    assert_eq!(state_directory(Some(OsString::from(""))), None);
    assert_eq!(state_directory(None), None);
}

/// Each bad value is refused with an error naming its key and value.
#[test]
fn every_bad_value_is_named() {
    let long_host = format!("{}:1", "h".repeat(300));
    let many_peers = format!(
        "peers = [{}]",
        vec!["\"127.0.0.1:1\""; MAX_CONFIG_PEERS + 1].join(",")
    );
    let cases: Vec<(String, &str, &str)> = vec![
        ("datadir = \"\"".into(), "datadir", ""),
        ("node_key = \"\"".into(), "node_key", ""),
        ("listen = \"nope\"".into(), "listen", "nope"),
        ("listen = \"127.0.0.1\"".into(), "listen", "127.0.0.1"),
        (
            "advertise = \"example.org\"".into(),
            "advertise",
            "example.org",
        ),
        ("advertise = \":24000\"".into(), "advertise", ":24000"),
        (format!("advertise = {long_host:?}"), "advertise", "hhhh"),
        ("rpc_bind = \"localhost\"".into(), "rpc_bind", "localhost"),
        (
            "rpc_bind = \"0.0.0.0:24201\"".into(),
            "rpc_bind",
            "0.0.0.0:24201",
        ),
        ("peers = [\"no-port\"]".into(), "peers", "no-port"),
        ("peers = [\"host:99999\"]".into(), "peers", "host:99999"),
        (many_peers, "peers", "1001 entries"),
        ("rpc_user = \"alice\"".into(), "rpc_user", "alice"),
        (
            "rpc_user = \"alice\"\nrpc_password = \"short\"".into(),
            "rpc_user",
            "alice",
        ),
        (
            "rpc_user = \"a:b\"\nrpc_password = \"0123456789abcdef\"".into(),
            "rpc_user",
            "a:b",
        ),
        ("rpc_password = \"0123456789abcdef\"".into(), "rpc_user", ""),
        ("rpc_auth = [\"alice\"]".into(), "rpc_auth", "alice"),
        (
            "rpc_auth = [\"alice:salt$abc\"]".into(),
            "rpc_auth",
            "alice:salt$abc",
        ),
        (
            "rpc_allow_ip = [\"10.0.0.300\"]".into(),
            "rpc_allow_ip",
            "10.0.0.300",
        ),
        (
            "metrics_bind = \"everywhere\"".into(),
            "metrics_bind",
            "everywhere",
        ),
        ("explorer = \"everywhere\"".into(), "explorer", "everywhere"),
        ("max_inbound = 10001".into(), "max_inbound", "10001"),
        ("max_outbound = 10001".into(), "max_outbound", "10001"),
        ("max_inbound_per_ip = 0".into(), "max_inbound_per_ip", "0"),
        (
            "max_inbound_per_ip = 4\nmax_inbound_per_subnet = 3".into(),
            "max_inbound_per_subnet",
            "3",
        ),
        (
            "max_inbound_per_subnet = 10001".into(),
            "max_inbound_per_subnet",
            "10001",
        ),
        ("log_level = \"verbose\"".into(), "log_level", "verbose"),
        (
            "log_level = \"timed=loud\"".into(),
            "log_level",
            "timed=loud",
        ),
        ("log_level = \"\"".into(), "log_level", ""),
        ("backup_dir = \"\"".into(), "backup_dir", ""),
        (
            "rpc_whitelist = [\"monitor:getblockcount,getblokhash\"]".into(),
            "rpc_whitelist",
            "getblokhash",
        ),
        (
            "rpc_whitelist = [\":getblockcount\"]".into(),
            "rpc_whitelist",
            ":getblockcount",
        ),
    ];
    for (text, key, value) in cases {
        let s = setup(&text);
        match NodeParams::resolve(&s.over()) {
            Err(ConfigError::Invalid {
                key: k,
                value: v,
                allowed,
            }) => {
                assert_eq!(k, key, "{text}");
                assert!(v.contains(value), "{text}: value {v:?}");
                assert!(!allowed.is_empty(), "{text}");
                let shown = ConfigError::Invalid {
                    key: k,
                    value: v,
                    allowed,
                }
                .to_string();
                assert!(shown.contains(&format!("`{key}`")), "{shown}");
            }
            other => panic!("{text}: expected an error for `{key}`, got {other:?}"),
        }
    }
    // The same check applies to a value from the command line.
    let s = setup("");
    let mut over = s.over();
    over.keys.listen = Some("bad".into());
    assert!(matches!(
        NodeParams::resolve(&over),
        Err(ConfigError::Invalid { key: "listen", .. })
    ));
}

/// Found by the `config_file` fuzz target: tracing-subscriber panicked on a directive with a
/// non-ASCII character after leading white space (the node died at start instead of naming
/// the key); and a space after a comma, which env_logger users write, was refused.
#[test]
fn log_filters_with_spaces_or_other_scripts_are_checked_not_panicked_on() {
    let bad = setup("log_level = \" m\u{ff}=====\u{ff}\"");
    assert!(matches!(
        NodeParams::resolve(&bad.over()),
        Err(ConfigError::Invalid {
            key: "log_level",
            ..
        })
    ));
    let spaced = setup("log_level = \"info, timed::network=debug\"");
    let p = NodeParams::resolve(&spaced.over()).unwrap();
    assert_eq!(p.log_level, "info, timed::network=debug");
}

#[test]
fn good_values_of_every_kind_pass() {
    let s = setup(
        "listen = \"\"\nadvertise = \"node.example.org:24200\"\nrpc_bind = \"0.0.0.0:30001\"\n\
         rpc_allow_ip = [\"10.0.0.5\", \"192.168.1.0/24\", \"::1\"]\n\
         rpc_user = \"alice\"\nrpc_password = \"0123456789abcdef\"\n\
         rpc_auth = [\"bob:salt$0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"]\n\
         peers = [\"[::1]:24210\", \"peer.example.org:24220\"]\nmetrics_bind = \"\"\n\
         log_level = \"timed::network=debug,info\"\nlog_format = \"json\"\nfast_sync_after = 0",
    );
    let p = NodeParams::resolve(&s.over()).unwrap();
    assert_eq!(p.listen, None);
    assert_eq!(p.advertise, "node.example.org:24200");
    assert_eq!(p.rpc_allow_ip.len(), 3);
    assert_eq!(
        p.rpc_user,
        Some(("alice".to_string(), "0123456789abcdef".to_string()))
    );
    assert_eq!(p.rpc_auth.len(), 1);
    assert_eq!(p.peers.len(), 2);
    assert_eq!(p.metrics_bind, None);
    assert_eq!(p.log_level, "timed::network=debug,info");
    assert_eq!(p.log_format, LogFormat::Json);
    assert_eq!(p.fast_sync_after, 0);
}

#[test]
fn unreadable_or_malformed_files_are_named() {
    for (text, names) in [
        ("netwrok = \"localnet\"", "netwrok"),
        ("max_inbound = \"ten\"", "max_inbound"),
        ("log_format = \"xml\"", "log_format"),
        ("network = \"moon\"", "moon"),
        ("peers = \"127.0.0.1:1\"", "peers"),
        ("listen = ", "listen"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timed.toml");
        std::fs::write(&path, text).unwrap();
        let over = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        match Effective::gather(&over) {
            Err(e @ ConfigError::Parse { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains(&path.display().to_string()), "{shown}");
                assert!(shown.contains(names), "{text}: {shown}");
            }
            other => panic!("{text}: expected a parse error, got {other:?}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = Overrides {
        config: Some(dir.path().join("missing.toml")),
        ..Overrides::default()
    };
    assert!(matches!(
        Effective::gather(&missing),
        Err(ConfigError::File(ReadFileError::Read { .. }))
    ));
    let path = dir.path().join("big.toml");
    std::fs::write(&path, "x".repeat(100)).unwrap();
    assert!(matches!(
        read_bounded(&path, 99),
        Err(ReadFileError::TooLarge { max: 99, .. })
    ));
    assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
}

#[test]
fn genesis_errors_come_after_the_other_keys() {
    let s = setup("");
    std::fs::write(s.dir.path().join("genesis.json"), "{").unwrap();
    assert!(matches!(
        NodeParams::resolve(&s.over()),
        Err(ConfigError::Genesis(GenesisError::Invalid { .. }))
    ));
    // A genesis for another network is refused.
    let mut over = s.over();
    over.keys.network = Some(Network::Testnet);
    std::fs::remove_file(s.dir.path().join("genesis.json")).unwrap();
    let s2 = setup("");
    over.keys.genesis = Some(s2.dir.path().join("genesis.json"));
    let err = NodeParams::resolve(&over).unwrap_err().to_string();
    assert!(
        err.contains("it is for localnet, this node runs testnet"),
        "{err}"
    );
    // An empty genesis path names the key.
    over.keys.genesis = Some(PathBuf::new());
    assert!(matches!(
        NodeParams::resolve(&over),
        Err(ConfigError::Invalid { key: "genesis", .. })
    ));
}

#[test]
fn print_config_names_each_origin_and_hides_the_password() {
    let s = setup("rpc_user = \"alice\"\nrpc_password = \"secret-secret-secret\"\nmax_inbound = 9");
    let mut over = s.over();
    over.keys.rpc_bind = Some("127.0.0.1:30001".into());
    over.keys.peers = Some(vec!["127.0.0.1:5".into()]);
    over.from_env = vec!["peers", "config"];
    over.state_directory = Some(PathBuf::from("/var/lib/timed"));
    let text = Effective::gather(&over).unwrap().render();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} =")) || l.starts_with(&format!("# {key} ")))
            .unwrap_or_else(|| panic!("no line for {key} in\n{text}"))
            .to_string()
    };
    let file = s.config.display().to_string();
    assert!(text.contains(&format!("# config file: {file} (env TIMED_CONFIG)")));
    assert!(line("rpc_bind").ends_with("# flag --rpc-bind"));
    assert!(line("peers").contains("[\"127.0.0.1:5\"]"));
    assert!(line("peers").ends_with("# env TIMED_PEERS"));
    assert!(line("max_inbound").ends_with(&format!("# config file {file}")));
    assert!(line("metrics_bind").contains("127.0.0.1:30002"));
    assert!(line("metrics_bind").ends_with("# default"));
    assert!(line("datadir").ends_with("# systemd $STATE_DIRECTORY"));
    assert!(line("rpc_password").contains("(hidden)"));
    assert!(!text.contains("secret-secret-secret"));
    assert!(text.ends_with("# valid: the node starts with these values\n"));
    for key in KEYS {
        line(key);
    }
    // The printed values form a config file that reads back the same (the hidden password
    // aside, which is a comment).
    let back: NodeConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.rpc_bind.as_deref(), Some("127.0.0.1:30001"));
    assert_eq!(back.max_inbound, Some(9));
    assert_eq!(back.rpc_password, None);

    // Mainnet without a genesis: everything is still shown, with the reason it would not
    // start.
    let text = Effective::gather(&Overrides::default()).unwrap().render();
    assert!(text.contains("# genesis is not set"));
    assert!(text.contains("# NOT VALID, the node refuses to start: no genesis is defined"));
}

/// The annotated files in `config/` parse, document every key, and hold only valid values.
#[test]
fn the_shipped_configs_parse_and_document_every_key() {
    let files = [
        ("localnet", include_str!("../../config/localnet.toml")),
        ("mainnet", include_str!("../../config/mainnet.toml")),
        ("testnet", include_str!("../../config/testnet.toml")),
    ];
    for (name, text) in files {
        let cfg: NodeConfig =
            toml::from_str(text).unwrap_or_else(|e| panic!("config/{name}.toml: {e}"));
        assert_eq!(cfg.network.map(Network::name), Some(name));
        for key in KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))
                    || l.starts_with(&format!("# {key} = "))),
                "config/{name}.toml does not show `{key}`"
            );
        }
    }
    // Mainnet and testnet: every value valid, and the missing genesis the one reason not to
    // start (it is checked last); the ports shown are the network's defaults.
    for (network, text) in [
        (Network::Mainnet, files[1].1),
        (Network::Testnet, files[2].1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timed.toml");
        std::fs::write(&path, text).unwrap();
        let over = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let eff = Effective::gather(&over).unwrap();
        assert!(matches!(eff.validate(), Err(ConfigError::NoGenesis(n)) if n == network));
        let (p2p, rpc) = default_ports(network);
        assert_eq!(eff.values.listen, Some(format!("0.0.0.0:{p2p}")));
        assert_eq!(eff.values.rpc_bind, Some(format!("127.0.0.1:{rpc}")));
    }
    let local: NodeConfig = toml::from_str(files[0].1).unwrap();
    assert_eq!(local.peers.map(|p| p.len()), Some(3));
}

/// The backup directory defaults to `<datadir>/backups` and, in the file, is relative to it;
/// the method lists follow bitcoind's rpcwhitelist / rpcwhitelistdefault.
#[test]
fn backup_dir_and_method_lists() {
    let s = setup("datadir = \"data\"");
    let p = NodeParams::resolve(&s.over()).unwrap();
    assert_eq!(p.backup_dir, s.dir.path().join("data").join("backups"));
    assert!(!p.rpc_whitelist.is_active());

    let s = setup("backup_dir = \"dumps\"\nrpc_whitelist = [\"monitor:getblockcount, uptime\"]");
    let p = NodeParams::resolve(&s.over()).unwrap();
    assert_eq!(p.backup_dir, s.dir.path().join("dumps"));
    assert!(p.rpc_whitelist.allows("monitor", "uptime"));
    assert!(!p.rpc_whitelist.allows("monitor", "backup"));
    assert!(!p.rpc_whitelist.allows("__cookie__", "uptime"));

    let s = setup("rpc_whitelist = [\"monitor:uptime\"]\nrpc_whitelist_default = false");
    let p = NodeParams::resolve(&s.over()).unwrap();
    assert!(p.rpc_whitelist.allows("__cookie__", "backup"));
    assert!(!p.rpc_whitelist.allows("monitor", "backup"));
}
