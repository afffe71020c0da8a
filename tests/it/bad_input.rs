//! Malformed input, row by row: broken configs, environments and
//! prevResults. Each row runs the real binary in a node namespace, as a
//! runtime would, and must get exactly one CNI error object on stdout with
//! the expected code and a message naming the field, no panic, and nothing
//! left behind (no attachment record, no gwsteer rule).
//!
//! Every row starts from a base input that ADDs successfully (checked
//! first) and breaks one thing, so a row that "passes" by failing for some
//! other reason, or that steers the pod anyway, is caught.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::{Value, json};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// What one row sends: the call (environment + config) or raw stdin bytes.
struct Input {
    call: CniCall,
    raw: Option<Vec<u8>>,
}

impl Input {
    fn config(&mut self) -> &mut Value {
        &mut self.call.config
    }
    fn policy(&mut self) -> &mut Value {
        &mut self.call.config["steering"][0]
    }
    fn prev(&mut self) -> &mut Value {
        &mut self.call.config["prevResult"]
    }
    fn remove(&mut self, key: &str) {
        self.call.config.as_object_mut().unwrap().remove(key);
    }
}

struct Row {
    name: &'static str,
    code: u64,
    fragment: &'static str,
    edit: Box<dyn Fn(&mut Input)>,
}

fn row(
    name: &'static str,
    code: u64,
    fragment: &'static str,
    edit: impl Fn(&mut Input) + 'static,
) -> Row {
    Row {
        name,
        code,
        fragment,
        edit: Box::new(edit),
    }
}

fn table() -> Vec<Row> {
    vec![
        // --- the configuration as a document
        row("bad JSON", 6, "is not valid JSON", |i| {
            i.raw = Some(br#"{"cniVersion": "1.0.0", "name": "bad-net", "#.to_vec());
        }),
        row("not an object", 6, "must be a JSON object", |i| {
            *i.config() = json!(["cniVersion", "1.0.0"]);
        }),
        row("missing name", 7, "name: required", |i| i.remove("name")),
        row("missing cniVersion", 7, "cniVersion: required", |i| {
            i.remove("cniVersion")
        }),
        row(
            "unsupported cniVersion",
            1,
            "cniVersion: \"0.2.0\" is not supported",
            |i| i.config()["cniVersion"] = json!("0.2.0"),
        ),
        row(
            "unknown top-level key",
            2,
            "stateDri: unknown key (did you mean \"stateDir\"?)",
            |i| i.config()["stateDri"] = json!("/tmp/x"),
        ),
        row(
            "bad network name",
            7,
            "name: \"bad net\" is not a valid network name",
            |i| i.config()["name"] = json!("bad net"),
        ),
        row(
            "relative stateDir",
            7,
            "stateDir: \"state\" is not an absolute path",
            |i| i.config()["stateDir"] = json!("state"),
        ),
        row(
            "stateDir past its limit",
            7,
            "stateDir: the path is 4001 bytes long; the limit is 3072",
            |i| i.config()["stateDir"] = json!(format!("/{}", "s".repeat(4000))),
        ),
        row(
            "bad logLevel",
            7,
            "logLevel: \"verbose\" is not one of",
            |i| i.config()["logLevel"] = json!("verbose"),
        ),
        row(
            "firewallBackend iptables",
            7,
            "firewallBackend: \"iptables\" is no longer supported: nftables is the one firewall backend",
            |i| i.config()["firewallBackend"] = json!("iptables"),
        ),
        row(
            "lockTimeoutMs 0",
            7,
            "lockTimeoutMs: 0 is out of range 1…600000",
            |i| i.config()["lockTimeoutMs"] = json!(0),
        ),
        row(
            "steering not a list",
            7,
            "steering: expected an array",
            |i| i.config()["steering"] = json!({"name": "oam"}),
        ),
        row(
            "network name one past its limit",
            7,
            "name: the network name is 201 bytes long; the limit is 200",
            |i| i.config()["name"] = json!("n".repeat(201)),
        ),
        row(
            "network name past NAME_MAX",
            7,
            "name: the network name is 300 bytes long; the limit is 200",
            |i| i.config()["name"] = json!("n".repeat(300)),
        ),
        // --- steering[]
        row(
            "bad gateway IP",
            7,
            "steering[0].gateways[1].via: \"10.0.0.300\" is not an IP address",
            |i| i.policy()["gateways"][1]["via"] = json!("10.0.0.300"),
        ),
        row(
            "weight 0",
            7,
            "steering[0].gateways[0].weight: 0 is out of range 1…256",
            |i| i.policy()["gateways"][0]["weight"] = json!(0),
        ),
        row(
            "weight 257",
            7,
            "steering[0].gateways[0].weight: 257 is out of range 1…256",
            |i| i.policy()["gateways"][0]["weight"] = json!(257),
        ),
        row(
            "bad gateway dev",
            7,
            "steering[0].gateways[0].dev: \"eth 1\" is not an interface name",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth 1"),
        ),
        row(
            "gateway dev with a wildcard",
            7,
            "steering[0].gateways[0].dev: \"eth*\" is not a literal interface name: holds '*', which nftables reads as a wildcard",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth*"),
        ),
        row(
            "gateway dev with a backslash",
            7,
            "steering[0].gateways[0].dev: \"eth\\\\*\" is not a literal interface name",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth\\*"),
        ),
        row(
            "gateway dev with a NUL",
            7,
            "steering[0].gateways[0].dev: \"eth\\01\" is not an interface name: holds '\\0'",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth\u{0}1"),
        ),
        row(
            "gateway dev with a newline",
            7,
            "steering[0].gateways[0].dev: \"eth\\n1\" is not an interface name: holds '\\n'",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth\n1"),
        ),
        row(
            "gateway dev of 16 bytes",
            7,
            "steering[0].gateways[0].dev: \"eth0123456789abc\" is not an interface name: is 16 bytes long; an interface name has at most 15",
            |i| i.policy()["gateways"][0]["dev"] = json!("eth0123456789abc"),
        ),
        row(
            "ingress interface with a wildcard",
            7,
            "steering[0].ingressInterfaces[0]: \"eth*\" is not a literal interface name",
            |i| {
                i.policy()["match"] = json!("connmark");
                i.policy()["mark"] = json!("0x14");
                i.policy()["ingressInterfaces"] = json!(["eth*"]);
            },
        ),
        row(
            "gateway 0.0.0.0",
            7,
            "steering[0].gateways[0].via: 0.0.0.0 cannot be a gateway: it is the unspecified address",
            |i| i.policy()["gateways"][0]["via"] = json!("0.0.0.0"),
        ),
        row(
            "gateway ::",
            7,
            "steering[0].gateways[1].via: :: cannot be a gateway: it is the unspecified address",
            |i| i.policy()["gateways"][1]["via"] = json!("::"),
        ),
        row(
            "gateway 255.255.255.255",
            7,
            "steering[0].gateways[0].via: 255.255.255.255 cannot be a gateway: it is the broadcast address",
            |i| i.policy()["gateways"][0]["via"] = json!("255.255.255.255"),
        ),
        row(
            "unknown key in a gateway",
            2,
            "steering[0].gateways[0].weigth: unknown key (did you mean \"weight\"?)",
            |i| i.policy()["gateways"][0]["weigth"] = json!(2),
        ),
        row("no gateways", 7, "steering[0].gateways: required", |i| {
            i.policy().as_object_mut().unwrap().remove("gateways");
        }),
        row(
            "unknown key in a policy",
            2,
            "steering[0].gatways: unknown key (did you mean \"gateways\"?)",
            |i| i.policy()["gatways"] = json!([]),
        ),
        row(
            "bad policy name",
            7,
            "steering[0].name: \"OAM\" must be 1 to 15 of a-z, 0-9 and '-'",
            |i| i.policy()["name"] = json!("OAM"),
        ),
        row(
            "reserved table 254",
            7,
            "steering[0].table: 254 is a reserved table",
            |i| i.policy()["table"] = json!(254),
        ),
        row("table 0", 7, "steering[0].table: 0 is out of range", |i| {
            i.policy()["table"] = json!(0)
        }),
        row(
            "duplicate policy names",
            7,
            "steering[1]: name \"oam\" is already used by steering policy \"oam\"",
            |i| {
                let mut second = i.policy().clone();
                second["table"] = json!(101);
                i.config()["steering"].as_array_mut().unwrap().push(second);
            },
        ),
        row(
            "duplicate tables",
            7,
            "steering[1]: table 100 is already used by steering policy \"oam\"",
            |i| {
                let mut second = i.policy().clone();
                second["name"] = json!("oam2");
                i.config()["steering"].as_array_mut().unwrap().push(second);
            },
        ),
        row(
            "exclusion rules at another policy's priority",
            7,
            "steering[1].priority: 1001 puts the exclusion rules of policy \"oam2\" at 1000, where steering[0] (policy \"oam\") has its steering rule",
            |i| {
                i.policy()["priority"] = json!(1000);
                let mut second = i.policy().clone();
                second["name"] = json!("oam2");
                second["table"] = json!(101);
                second["priority"] = json!(1001);
                i.config()["steering"].as_array_mut().unwrap().push(second);
            },
        ),
        row(
            "steering rule at another policy's exclusion priority",
            7,
            "steering[1].priority: 999 puts the steering rule of policy \"oam2\" at 999, where steering[0] (policy \"oam\") has its exclusion rules",
            |i| {
                i.policy()["priority"] = json!(1000);
                let mut second = i.policy().clone();
                second["name"] = json!("oam2");
                second["table"] = json!(101);
                second["priority"] = json!(999);
                i.config()["steering"].as_array_mut().unwrap().push(second);
            },
        ),
        row(
            "bad CIDR",
            7,
            "steering[0].exclude[1]: \"10.96.0.0/33\" is not a CIDR",
            |i| i.policy()["exclude"][1] = json!("10.96.0.0/33"),
        ),
        row(
            "CIDR with host bits",
            7,
            "steering[0].exclude[0]: \"10.244.1.5/16\" has host bits set; did you mean \"10.244.0.0/16\"?",
            |i| i.policy()["exclude"][0] = json!("10.244.1.5/16"),
        ),
        row(
            "destination without a gateway of its family",
            7,
            "steering[0].destinations[0]: 2001:db8::/32 has no gateway of its address family",
            |i| {
                i.policy()["gateways"] = json!([{"via": "192.0.2.254"}]);
                i.policy()["destinations"] = json!(["2001:db8::/32"]);
            },
        ),
        row(
            "priority at main's",
            7,
            "steering[0].priority: 32766 is out of range 2…32765",
            |i| i.policy()["priority"] = json!(32766),
        ),
        row(
            "priority 1",
            7,
            "steering[0].priority: 1 is out of range 2…32765",
            |i| i.policy()["priority"] = json!(1),
        ),
        row(
            "negative priority",
            7,
            "steering[0].priority: expected a non-negative whole number",
            |i| i.policy()["priority"] = json!(-5),
        ),
        row(
            "bad match",
            7,
            "steering[0].match: \"fwmark\" is not one of source, mark, connmark",
            |i| i.policy()["match"] = json!("fwmark"),
        ),
        row(
            "bad mark",
            7,
            "steering[0].mark: \"0xZZ\" is not a 32-bit mark",
            |i| {
                i.policy()["match"] = json!("mark");
                i.policy()["mark"] = json!("0xZZ");
            },
        ),
        row(
            "mark 0",
            7,
            "steering[0].mark: 0 is not a usable mark",
            |i| {
                i.policy()["match"] = json!("mark");
                i.policy()["mark"] = json!("0x0");
            },
        ),
        row(
            "mark on a source policy",
            7,
            "steering[0].mark: only used with match \"mark\" or \"connmark\"",
            |i| i.policy()["mark"] = json!("0x14"),
        ),
        row(
            "args.cni.gwsteer names an unknown policy",
            7,
            "args.cni.gwsteer.steering[0]: no steering policy is named \"nope\"",
            |i| i.config()["args"] = json!({"cni": {"gwsteer": {"steering": ["nope"]}}}),
        ),
        row(
            "args.cni.gwsteer bad role",
            7,
            "args.cni.gwsteer.role: \"boss\" is not one of client, router, none",
            |i| i.config()["args"] = json!({"cni": {"gwsteer": {"role": "boss"}}}),
        ),
        // --- the environment
        row(
            "unknown CNI_COMMAND",
            4,
            "CNI_COMMAND: \"FOO\" is not one of",
            |i| i.call.command = "FOO".into(),
        ),
        row(
            "missing CNI_CONTAINERID",
            4,
            "CNI_CONTAINERID: required",
            |i| i.call.container_id.clear(),
        ),
        row(
            "bad CNI_CONTAINERID",
            4,
            "CNI_CONTAINERID: \"c1/../../etc\" must be",
            |i| i.call.container_id = "c1/../../etc".into(),
        ),
        row(
            "CNI_CONTAINERID one past its limit",
            4,
            "CNI_CONTAINERID: the container id is 201 bytes long; the limit is 200",
            |i| i.call.container_id = "c".repeat(201),
        ),
        row(
            "CNI_CONTAINERID past NAME_MAX on CHECK",
            4,
            "CNI_CONTAINERID: the container id is 250 bytes long; the limit is 200",
            |i| {
                i.call.command = "CHECK".into();
                i.call.container_id = "c".repeat(250);
            },
        ),
        row(
            "missing CNI_CONTAINERID on DEL",
            4,
            "CNI_CONTAINERID: required",
            |i| {
                i.call.command = "DEL".into();
                i.call.container_id.clear();
            },
        ),
        row("missing CNI_IFNAME", 4, "CNI_IFNAME: required", |i| {
            i.call.ifname.clear()
        }),
        row(
            "too long CNI_IFNAME",
            4,
            "CNI_IFNAME: \"eth0123456789abc\" is not a valid interface name",
            |i| i.call.ifname = "eth0123456789abc".into(),
        ),
        row("missing CNI_NETNS on ADD", 4, "CNI_NETNS: required", |i| {
            i.call.netns_path = None
        }),
        row(
            "missing CNI_NETNS on CHECK",
            4,
            "CNI_NETNS: required",
            |i| {
                i.call.command = "CHECK".into();
                i.call.netns_path = None;
            },
        ),
        row(
            "CNI_ARGS without '='",
            4,
            "CNI_ARGS: \"K8S_POD_NAMESPACE\" is not KEY=VALUE",
            |i| i.call.args = Some("IgnoreUnknown=1;K8S_POD_NAMESPACE;K8S_POD_NAME=web-0".into()),
        ),
        // --- prevResult
        row(
            "missing prevResult on ADD",
            7,
            "prevResult: required",
            |i| i.remove("prevResult"),
        ),
        row(
            "prevResult not an object",
            7,
            "prevResult: expected an object",
            |i| *i.prev() = json!(["10.244.1.5/24"]),
        ),
        row(
            "prevResult.ips not an array",
            7,
            "prevResult.ips: expected an array",
            |i| i.prev()["ips"] = json!({"address": "10.244.1.5/24"}),
        ),
        row(
            "address not a CIDR",
            7,
            "prevResult.ips[0].address: \"10.244.1.5\" is not an address with prefix length",
            |i| i.prev()["ips"][0]["address"] = json!("10.244.1.5"),
        ),
        row(
            "gateway not an IP",
            7,
            "prevResult.ips[0].gateway: \"10.244.1.300\" is not an IP address",
            |i| i.prev()["ips"][0]["gateway"] = json!("10.244.1.300"),
        ),
        row(
            "interface index out of range",
            7,
            "prevResult.ips[0].interface: 7 is not an index into prevResult.interfaces (3 entries)",
            |i| i.prev()["ips"][0]["interface"] = json!(7),
        ),
        row(
            "version 4 on an IPv6 address",
            7,
            "prevResult.ips[1].version: \"4\" does not match address fd00:244:0:1::5/64",
            |i| {
                i.config()["cniVersion"] = json!("0.4.0");
                i.prev()["cniVersion"] = json!("0.4.0");
                i.prev()["ips"][0]["version"] = json!("4");
                i.prev()["ips"][1]["version"] = json!("4");
            },
        ),
    ]
}

/// Attachment records anywhere under the state root.
fn records(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(nets) = fs::read_dir(state) {
        for net in nets.flatten() {
            if let Ok(files) = fs::read_dir(net.path().join("attachments")) {
                out.extend(files.flatten().map(|f| f.path()));
            }
        }
    }
    out
}

/// gwsteer's rules (routing protocol 211) in `ns`, both families.
fn gw_rules(ns: &str) -> Vec<Value> {
    [Family::V4, Family::V6]
        .into_iter()
        .flat_map(|f| rules(ns, f))
        .filter(|r| matches!(r["protocol"].as_str(), Some("211" | "gwsteer")))
        .collect()
}

/// What is wrong with `out` for `row`, if anything.
fn judge(row: &Row, input: &Input, out: &CniOutcome) -> Vec<String> {
    let mut problems = Vec::new();
    if out.success() {
        problems.push("exit code 0".into());
    }
    if out.stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    let docs: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(&out.stdout_raw)
        .into_iter::<Value>()
        .collect();
    let e = match docs {
        Ok(docs) if docs.len() == 1 && docs[0].is_object() => docs[0].clone(),
        _ => {
            problems.push("stdout is not exactly one JSON object".into());
            return problems;
        }
    };
    // The error speaks the config's version when it has a supported one.
    let asked = if input.raw.is_some() {
        None
    } else {
        input.call.config["cniVersion"]
            .as_str()
            .filter(|v| VERSIONS.contains(v))
    };
    match (e["cniVersion"].as_str(), asked) {
        (Some(v), Some(want)) if v != want => {
            problems.push(format!("cniVersion {v}, the config says {want}"))
        }
        (Some(v), None) if !VERSIONS.contains(&v) => {
            problems.push(format!("cniVersion {v} is not a supported version"))
        }
        (None, _) => problems.push("no cniVersion".into()),
        _ => {}
    }
    if e["code"].as_u64() != Some(row.code) {
        problems.push(format!("code {} instead of {}", e["code"], row.code));
    }
    match e["msg"].as_str() {
        Some(msg) if msg.contains(row.fragment) => {}
        other => problems.push(format!("msg {other:?} lacks {:?}", row.fragment)),
    }
    problems
}

#[test]
fn malformed_input_gets_a_cni_error_naming_the_field_and_leaves_nothing() {
    let lab = Lab::new("badinput");
    // Uplink eth1: 192.0.2.1/24, fd00:192::1/64.
    let node = uplink_node(&lab);
    let pod = netns_path(&lab.netns("pod"));
    let state = lab.tmpdir().join("state");

    let base_config = json!({
        "cniVersion": "1.0.0",
        "name": "bad-net",
        "type": "gwsteer",
        "stateDir": state,
        "steering": [{
            "name": "oam",
            "table": 100,
            "gateways": [{"via": "192.0.2.254"}, {"via": "fd00:192::fe"}],
            "exclude": ["10.244.0.0/16", "10.96.0.0/12", "fd00:244::/48"]
        }],
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "02:00:00:00:00:01"},
                {"name": "veth5", "mac": "02:00:00:00:00:02"},
                {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": pod}
            ],
            "ips": [
                {"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2},
                {"address": "fd00:244:0:1::5/64", "gateway": "fd00:244:0:1::1", "interface": 2}
            ]
        }
    });
    let base = || Input {
        call: CniCall::new("ADD", "c1", "eth0", base_config.clone())
            .netns(&pod)
            .cni_args(&k8s_cni_args("default", "web-0", "c1")),
        raw: None,
    };

    // The base input works, and steers the pod: a row that leaves no rule
    // behind proves something.
    let ok = base();
    let out = invoke(&node, &gwsteer_bin(), &ok.call);
    out.expect_ok("ADD of the base input");
    assert_eq!(gw_rules(&node).len(), 5, "{:?}", gw_rules(&node));
    assert_eq!(records(&state).len(), 1);
    let mut del = base();
    del.call.command = "DEL".into();
    invoke(&node, &gwsteer_bin(), &del.call).expect_ok("DEL of the base input");
    assert!(gw_rules(&node).is_empty() && records(&state).is_empty());

    let rows = table();
    assert!(rows.len() >= 25);
    let mut failures = Vec::new();
    for row in &rows {
        let mut input = base();
        (row.edit)(&mut input);
        let out = match &input.raw {
            Some(raw) => invoke_raw(&node, &gwsteer_bin(), &input.call, raw),
            None => invoke(&node, &gwsteer_bin(), &input.call),
        };
        let mut problems = judge(row, &input, &out);
        let left = records(&state);
        if !left.is_empty() {
            problems.push(format!("records left: {left:?}"));
        }
        let rules = gw_rules(&node);
        if !rules.is_empty() {
            problems.push(format!("gwsteer rules left: {rules:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{out}", row.name, problems.join("; ")));
        }
        if !left.is_empty() || !rules.is_empty() {
            // Start the next row clean.
            invoke(&node, &gwsteer_bin(), &del.call);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}
