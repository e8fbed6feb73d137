//! Hostile `conductor.toml`: arbitrary text and structure-aware mutations of a valid config,
//! with proptest (fixed seeds). `LiveConfig::load` never panics, every error starts with the
//! file's path, and an error about a key names that key.

use conductor_live::config::LiveConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

const VALID: &str = r#"
[api]
listen = "127.0.0.1:8080"

[database]
path = "conductor.db"

[containers]
image = "itzg/minecraft-server:latest"
container_port = 25565
stop_grace_s = 30
ports = "25565-25664"
docker_timeout_s = 20

[containers.env]
EULA = "TRUE"

[ssh]
user = "root"
key = "/etc/conductor/id_ed25519"
known_hosts = "/etc/conductor/known_hosts"
strict_host_keys = true
port = 22

[[nodes]]
name = "dedi-1"
address = "10.0.0.1"
ram_mb = 65536
ports = "25565-25600"

[hetzner]
enabled = false
location = "nbg1"

[players]
interval_s = 60
timeout_s = 5

[conductor.queue]
len_max = 1000
per_user_max = 5
"#;

/// Dotted keys of the config above and a few it does not set; `nodes.0.x` is `nodes[0].x`.
const KEYS: &[&str] = &[
    "api.listen",
    "api.token_file",
    "api.token",
    "database.path",
    "containers.image",
    "containers.container_port",
    "containers.ports",
    "containers.stop_grace_s",
    "containers.env",
    "containers.env.BAD KEY",
    "ssh.user",
    "ssh.port",
    "ssh.strict_host_keys",
    "nodes",
    "nodes.0.name",
    "nodes.0.address",
    "nodes.0.ram_mb",
    "nodes.0.ports",
    "nodes.0.ssh_port",
    "nodes.0.colour",
    "hetzner.enabled",
    "hetzner.ssh_keys",
    "hetzner.boot_timeout_s",
    "players.interval_s",
    "players.timeout_s",
    "conductor.queue.len_max",
    "conductor.queue.per_user_max",
    "conductor.health.interval_s",
    "conductor.placement",
    "surprise",
];

const HOSTILE: &[&str] = &[
    "-1",
    "0",
    "1e309",
    "70000",
    "18446744073709551616",
    "\"\"",
    "\"$(id)\"",
    "\"-oProxyCommand=sh -c id\"",
    "\"a;rm -rf /\"",
    "\"../x\"",
    "\"Bad Name\"",
    "\"10-5\"",
    "[]",
    "[1, \"a\"]",
    "{}",
    "true",
    "1979-05-27T07:32:00Z",
];

fn set(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut root = toml::Value::Table(std::mem::take(table));
    set_in(&mut root, &key.split('.').collect::<Vec<_>>(), value);
    let toml::Value::Table(t) = root else { unreachable!() };
    *table = t;
}

fn set_in(v: &mut toml::Value, parts: &[&str], value: toml::Value) {
    let Some((first, rest)) = parts.split_first() else {
        *v = value;
        return;
    };
    match v {
        toml::Value::Array(a) => set_in(&mut a[first.parse::<usize>().unwrap()], rest, value),
        toml::Value::Table(t) => {
            let next = t.entry(first.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            set_in(next, rest, value)
        }
        other => {
            *other = toml::Value::Table(toml::Table::new());
            set_in(other, parts, value)
        }
    }
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap(),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[test]
fn the_fuzz_base_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, VALID).unwrap();
    LiveConfig::load(&path).unwrap();
}

#[test]
fn arbitrary_text_never_panics_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let strategy = prop_oneof![
        ".{0,300}",
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "(\\[\\[?[a-z._]{1,12}\\]\\]?\n|[a-z_]{1,12} = (\"[^\"\n]{0,10}\"|-?[0-9]{1,22}|\\[\\]|true)\n){0,12}",
    ];
    runner(300, 11)
        .run(&strategy, |text| {
            std::fs::write(&path, &text).unwrap();
            if let Err(e) = LiveConfig::load(&path) {
                prop_assert!(e.starts_with(&path.display().to_string()), "{}", e);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_keys_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let strategy = (prop::sample::select(KEYS), prop::sample::select(HOSTILE));
    runner(400, 12)
        .run(&strategy, |(key, raw)| {
            let mut table: toml::Table = VALID.parse().unwrap();
            set(&mut table, key, parse_value(raw));
            std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
            let leaf = key.rsplit('.').next().unwrap();
            if let Err(e) = LiveConfig::load(&path) {
                prop_assert!(e.starts_with(&path.display().to_string()), "{}", e);
                prop_assert!(e.contains(leaf), "{}={}: the error does not name {:?}: {}", key, raw, leaf, e);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn hostile_node_names_and_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for (key, raw) in [
        ("nodes.0.name", "\"$(id)\""),
        ("nodes.0.name", "\"a;rm -rf /\""),
        ("nodes.0.name", "\"../x\""),
        ("nodes.0.address", "\"-oProxyCommand=sh -c id\""),
        ("nodes.0.address", "\"$(id)\""),
        ("nodes.0.address", "\"root@host\""),
        ("nodes.0.address", "\"a b\""),
        ("containers.env.BAD KEY", "\"x\""),
    ] {
        let mut table: toml::Table = VALID.parse().unwrap();
        set(&mut table, key, parse_value(raw));
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        let e = LiveConfig::load(&path).expect_err(key);
        let field = key.replacen("nodes.0", "nodes[0]", 1).replace(".BAD KEY", "");
        assert!(e.contains(&field), "{key}={raw}: {e}");
    }
}
