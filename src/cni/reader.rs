//! A JSON reader that knows where it is. Every accessor returns errors that
//! name the field by path (`steering[0].gateways[1].via: "10.0.0.300" is not
//! an IP address`), so validation code reads like the contract's tables.
//!
//! A path is kept as the borrowed keys and the indexes that lead to a value
//! ([`Path`], copied, never allocated) and written out only when an error
//! names it: reading a valid configuration formats nothing.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::{Error, Result, code};

/// How deep a path is kept; a deeper one is shown with `…` in its place.
const MAX_DEPTH: usize = 12;

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where a value sits in its document: `steering[0].gateways[1].via`.
#[derive(Clone, Copy)]
pub struct Path<'a> {
    steps: [Step<'a>; MAX_DEPTH],
    len: u8,
    /// Steps were left out past [`MAX_DEPTH`].
    cut: bool,
}

impl<'a> Path<'a> {
    pub const ROOT: Path<'static> = Path {
        steps: [Step::Index(0); MAX_DEPTH],
        len: 0,
        cut: false,
    };

    fn then(mut self, step: Step<'a>) -> Path<'a> {
        match self.steps.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = step;
                self.len += 1;
            }
            None => self.cut = true,
        }
        self
    }

    /// The path of member `key` of the object here.
    pub fn key(self, key: &'a str) -> Path<'a> {
        self.then(Step::Key(key))
    }

    /// The path of item `i` of the array here.
    pub fn index(self, i: usize) -> Path<'a> {
        self.then(Step::Index(i))
    }

    pub fn is_root(&self) -> bool {
        self.len == 0 && !self.cut
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps[..usize::from(self.len)].iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        if self.cut {
            f.write_str(if self.len == 0 { "…" } else { ".…" })?;
        }
        Ok(())
    }
}

/// A value at a path inside a JSON document.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub path: Path<'a>,
    pub value: &'a Value,
}

/// Render a JSON value briefly for an error message.
pub fn show(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> At<'a> {
    pub fn root(value: &'a Value) -> Self {
        At {
            path: Path::ROOT,
            value,
        }
    }

    /// `value` at member `key` of the document's root, for a part of a
    /// document read on its own (`prevResult`).
    pub fn named(key: &'a str, value: &'a Value) -> Self {
        At {
            path: Path::ROOT.key(key),
            value,
        }
    }

    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        if self.path.is_root() {
            Error::config(what.to_string())
        } else {
            Error::config(format!("{}: {what}", self.path))
        }
    }

    fn expected(&self, what: &str) -> Error {
        self.err(format!(
            "expected {what}, found {} {}",
            kind(self.value),
            show(self.value)
        ))
    }

    pub fn object(&self) -> Result<Obj<'a>> {
        match self.value {
            Value::Object(map) => Ok(Obj {
                path: self.path,
                map,
            }),
            _ => Err(self.expected("an object")),
        }
    }

    pub fn str(&self) -> Result<&'a str> {
        self.value.as_str().ok_or_else(|| self.expected("a string"))
    }

    pub fn bool(&self) -> Result<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| self.expected("true or false"))
    }

    pub fn u64(&self) -> Result<u64> {
        self.value
            .as_u64()
            .ok_or_else(|| self.expected("a non-negative whole number"))
    }

    pub fn u32_in(&self, lo: u32, hi: u32) -> Result<u32> {
        let n = self.u64()?;
        if n < u64::from(lo) || n > u64::from(hi) {
            return Err(self.err(format!("{n} is out of range {lo}…{hi}")));
        }
        Ok(n as u32)
    }

    pub fn ip(&self) -> Result<IpAddr> {
        self.str()?
            .parse()
            .map_err(|_| self.err(format!("{} is not an IP address", show(self.value))))
    }

    /// A CIDR in network form (`10.0.0.0/8`, not `10.0.0.1/8`).
    pub fn cidr(&self) -> Result<IpNet> {
        let net: IpNet = self.str()?.parse().map_err(|_| {
            self.err(format!(
                "{} is not a CIDR (address/prefix length)",
                show(self.value)
            ))
        })?;
        if net.trunc() != net {
            return Err(self.err(format!(
                "{} has host bits set; did you mean \"{}\"?",
                show(self.value),
                net.trunc()
            )));
        }
        Ok(net)
    }

    pub fn array(&self) -> Result<Vec<At<'a>>> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.expected("an array"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| At {
                path: self.path.index(i),
                value,
            })
            .collect())
    }

    pub fn list_of<T>(&self, f: impl Fn(&At<'a>) -> Result<T>) -> Result<Vec<T>> {
        self.array()?.iter().map(f).collect()
    }
}

/// A JSON object at a path.
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    pub path: Path<'a>,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The key's value; absent when missing or null.
    pub fn get(&self, key: &str) -> Option<At<'a>> {
        match self.map.get_key_value(key) {
            None | Some((_, Value::Null)) => None,
            Some((key, value)) => Some(At {
                path: self.path.key(key),
                value,
            }),
        }
    }

    pub fn req(&self, key: &str) -> Result<At<'a>> {
        self.get(key).ok_or_else(|| self.err_at(key, "required"))
    }

    /// An error naming member `key` (which may be missing) of this object.
    fn err_at(&self, key: &str, what: impl fmt::Display) -> Error {
        if self.path.is_root() {
            Error::config(format!("{key}: {what}"))
        } else {
            Error::config(format!("{}.{key}: {what}", self.path))
        }
    }

    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        At {
            path: self.path,
            value: &Value::Null,
        }
        .err(what)
    }

    /// Refuse keys this version does not know (CNI code 2, "unsupported
    /// field"): a typo like `gatways` must not silently change behaviour.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                let mut msg = self.err_at(key, "unknown key").msg;
                if let Some(near) = nearest(key, known) {
                    msg.push_str(&format!(" (did you mean \"{near}\"?)"));
                }
                return Err(Error::new(code::UNSUPPORTED_FIELD, msg));
            }
        }
        Ok(())
    }
}

/// The known key closest to a misspelt one, if it is close (the first in
/// alphabetical order of those equally close).
fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(&key.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg<T>(r: Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.msg,
        }
    }

    #[test]
    fn errors_name_the_path_of_keys_and_indexes() {
        let doc = json!({"a": {"b": [{"c": "x"}, 7]}, "top": "y"});
        let root = At::root(&doc).object().unwrap();
        let b = root.req("a").unwrap().object().unwrap().req("b").unwrap();
        let items = b.array().unwrap();
        let first = items[0].object().unwrap();
        assert_eq!(msg(first.req("d")), "a.b[0].d: required");
        assert_eq!(
            msg(first.req("c").unwrap().u64()),
            "a.b[0].c: expected a non-negative whole number, found a string \"x\""
        );
        assert_eq!(
            msg(items[1].object()),
            "a.b[1]: expected an object, found a number 7"
        );
        assert_eq!(msg(root.req("nope")), "nope: required");
        assert_eq!(
            msg(root.req("top").unwrap().bool()),
            "top: expected true or false, found a string \"y\""
        );
        assert_eq!(
            msg(At::root(&doc).array()),
            "expected an array, found an object {\"a\":{\"b\":[{\"c\":\"x\"},7]},\"top\":\"y\"}"
        );
        let list = json!([[1]]);
        let inner = At::root(&list).array().unwrap()[0].array().unwrap();
        assert_eq!(
            msg(inner[0].str()),
            "[0][0]: expected a string, found a number 1"
        );
        let prev = json!({"ips": 3});
        let named = At::named("prevResult", &prev).object().unwrap();
        assert_eq!(
            msg(named.req("ips").unwrap().array()),
            "prevResult.ips: expected an array, found a number 3"
        );
        assert_eq!(msg(named.req("dns")), "prevResult.dns: required");
    }

    #[test]
    fn unknown_keys_are_named_with_the_nearest_known_one() {
        let doc = json!({"p": {"gatways": 1}});
        let p = At::root(&doc)
            .object()
            .unwrap()
            .req("p")
            .unwrap()
            .object()
            .unwrap();
        let e = p.only(&["gateways", "table"]).unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD);
        assert_eq!(e.msg, "p.gatways: unknown key (did you mean \"gateways\"?)");
        let e = p.only(&["priority"]).unwrap_err();
        assert_eq!(e.msg, "p.gatways: unknown key");
        assert!(p.only(&["gatways"]).is_ok());
    }

    /// A path deeper than is kept still names where it starts.
    #[test]
    fn a_very_deep_path_is_cut_with_an_ellipsis() {
        let mut doc = json!("leaf");
        for _ in 0..(MAX_DEPTH + 2) {
            doc = json!({ "k": doc });
        }
        let mut at = At::root(&doc);
        while let Ok(o) = at.object() {
            at = o.req("k").unwrap();
        }
        let want = format!("{}.…: expected a non-negative", ["k"; MAX_DEPTH].join("."));
        assert!(msg(at.u64()).starts_with(&want), "{}", msg(at.u64()));
    }
}
