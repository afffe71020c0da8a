//! A JSON reader that knows where it is. Every accessor returns errors that
//! name the field by path (`steering[0].gateways[1].via: "10.0.0.300" is not
//! an IP address`), so validation code reads like the contract's tables.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::{Error, Result, code};

/// A value at a path inside a JSON document.
#[derive(Clone)]
pub struct At<'a> {
    pub path: String,
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> At<'a> {
    pub fn root(value: &'a Value) -> Self {
        At {
            path: String::new(),
            value,
        }
    }

    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        if self.path.is_empty() {
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
                path: self.path.clone(),
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
                path: format!("{}[{i}]", self.path),
                value,
            })
            .collect())
    }

    pub fn list_of<T>(&self, f: impl Fn(&At<'a>) -> Result<T>) -> Result<Vec<T>> {
        self.array()?.iter().map(f).collect()
    }
}

/// A JSON object at a path.
pub struct Obj<'a> {
    pub path: String,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// The key's value; absent when missing or null.
    pub fn get(&self, key: &str) -> Option<At<'a>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(At {
                path: join(&self.path, key),
                value,
            }),
        }
    }

    pub fn req(&self, key: &str) -> Result<At<'a>> {
        self.get(key)
            .ok_or_else(|| Error::config(format!("{}: required", join(&self.path, key))))
    }

    pub fn err(&self, what: impl std::fmt::Display) -> Error {
        At {
            path: self.path.clone(),
            value: &Value::Null,
        }
        .err(what)
    }

    /// Refuse keys this version does not know (CNI code 2, "unsupported
    /// field"): a typo like `gatways` must not silently change behaviour.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        let known: BTreeSet<&str> = known.iter().copied().collect();
        for key in self.map.keys() {
            if !known.contains(key.as_str()) {
                let mut msg = format!("{}: unknown key", join(&self.path, key));
                if let Some(near) = nearest(key, &known) {
                    msg.push_str(&format!(" (did you mean \"{near}\"?)"));
                }
                return Err(Error::new(code::UNSUPPORTED_FIELD, msg));
            }
        }
        Ok(())
    }
}

/// The known key closest to a misspelt one, if it is close.
fn nearest<'k>(key: &str, known: &BTreeSet<&'k str>) -> Option<&'k str> {
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
