//! The YAML config file (`--config-file`), with etcd's keys: etcd's config
//! file keys are its flag names (`name`, `data-dir`, `listen-client-urls`
//! as a comma-separated string, `initial-cluster`, `heartbeat-interval` and
//! `election-timeout` in milliseconds, `quota-backend-bytes`, `log-level`,
//! `log-outputs` as a list, ...), except that TLS goes in two sections,
//! `client-transport-security` and `peer-transport-security`, each with
//! `cert-file`, `key-file`, `client-cert-auth`, `trusted-ca-file` and
//! `auto-tls`. Synod's own flags are keys of the same name.
//!
//! As in etcd (which decodes the file into Go types through JSON): a key
//! with no value (`data-dir:`) leaves the flag's default (even a key of
//! etcd's that Synod does not serve: unset, it asks for nothing), and a duration
//! key given as a number is in nanoseconds (Go's `time.Duration`); Synod
//! also takes a duration written as a string in Go's syntax (`"2h"`). A key
//! Synod does not serve is refused with its name, where etcd would skip it.
//!
//! This module only turns the file into flag values; every value is then
//! checked by the same parser as the command line ([`super::sources`]).

use super::{bad, unserved, ConfigError};
use serde_yaml_ng::Value;

/// The flags whose etcd config file key is a Go `time.Duration`: a number
/// there counts nanoseconds.
pub const NANOSECOND_FLAGS: &[&str] = &[
    "grpc-keepalive-min-time",
    "grpc-keepalive-interval",
    "grpc-keepalive-timeout",
    "experimental-watch-progress-notify-interval",
    "experimental-corrupt-check-time",
];

/// etcd's TLS sections: the section key and the prefix of its flags.
const TLS_SECTIONS: &[(&str, &str)] = &[("client-transport-security", ""), ("peer-transport-security", "peer-")];

/// The keys of a TLS section, each the flag it sets less the prefix.
const TLS_KEYS: &[&str] = &["cert-file", "key-file", "client-cert-auth", "trusted-ca-file", "auto-tls"];

/// One flag the file sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileValue {
    /// The key as the file writes it (`peer-transport-security.cert-file`).
    pub key: String,
    /// The flag it sets, without dashes (`peer-cert-file`).
    pub flag: String,
    /// The flag's value as the command line would write it.
    pub value: String,
}

/// The flags a config file sets, in the file's order; `flags` are the
/// member's flags that may be keys.
pub fn flag_values(text: &str, flags: &[String]) -> Result<Vec<FileValue>, ConfigError> {
    let document: Value = serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let top = match document {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(m) => m,
        _ => return Err(bad("the file must be a mapping of keys to values, as etcd's config file")),
    };
    let mut values: Vec<FileValue> = Vec::new();
    let mut push = |v: FileValue| -> Result<(), ConfigError> {
        if let Some(earlier) = values.iter().find(|e| e.flag == v.flag) {
            return Err(bad(format!("keys {} and {} both set --{}: keep one", earlier.key, v.key, v.flag)));
        }
        values.push(v);
        Ok(())
    };
    for (key, value) in &top {
        let key = key_text(key)?;
        if let Some(&(_, prefix)) = TLS_SECTIONS.iter().find(|(section, _)| *section == key) {
            let section = match value {
                Value::Null => continue,
                Value::Mapping(m) => m,
                _ => return Err(bad(format!("key {key} must be a mapping of {}", TLS_KEYS.join(", ")))),
            };
            for (inner, value) in section {
                let inner = key_text(inner)?;
                let full = format!("{key}.{inner}");
                if !TLS_KEYS.contains(&inner.as_str()) {
                    return Err(bad(format!("unknown key {full}: Synod serves {} there", TLS_KEYS.join(", "))));
                }
                let flag = format!("{prefix}{inner}");
                if let Some(value) = scalar(&full, &flag, value)? {
                    push(FileValue { key: full, flag, value })?;
                }
            }
            continue;
        }
        if !flags.contains(&key) {
            // A key of etcd's with no value asks for etcd's default, which
            // is what Synod does without it (no discovery, no proxy, ...).
            if value.is_null() && unserved::why(&key).is_some() {
                continue;
            }
            return Err(match unserved::why(&key) {
                Some(why) => bad(format!("key {key} is etcd's, which Synod does not serve: {why}; remove it")),
                None => bad(format!(
                    "unknown key {key}: Synod serves no such setting (the keys are etcd's, and Synod's flag \
                     names; see synod --help); remove it"
                )),
            });
        }
        if let Some(v) = scalar(&key, &key, value)? {
            push(FileValue { key: key.clone(), flag: key, value: v })?;
        }
    }
    Ok(values)
}

/// A key as text.
fn key_text(key: &Value) -> Result<String, ConfigError> {
    match key {
        Value::String(s) => Ok(s.clone()),
        other => Err(bad(format!("a key must be text, not {}", describe(other)))),
    }
}

/// The value of `key` for `--{flag}` as the command line writes it; `None`
/// for no value. A list becomes a comma-separated string (etcd's
/// `cipher-suites` and `log-outputs` are lists).
fn scalar(key: &str, flag: &str, value: &Value) -> Result<Option<String>, ConfigError> {
    let nanos = NANOSECOND_FLAGS.contains(&flag);
    let one = |v: &Value| -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Number(n) if nanos => match n.as_u64() {
                Some(ns) => Ok(format!("{ns}ns")),
                None => Err(bad(format!(
                    "key {key}: {n} is not a duration: write whole nanoseconds (as etcd reads a number) or a \
                     string like \"10s\""
                ))),
            },
            Value::Number(n) => Ok(n.to_string()),
            other => Err(bad(format!("key {key} must be a value, not {}", describe(other)))),
        }
    };
    match value {
        Value::Null => Ok(None),
        Value::Sequence(items) => Ok(Some(items.iter().map(one).collect::<Result<Vec<_>, _>>()?.join(","))),
        v => one(v).map(Some),
    }
}

/// What kind of YAML value `v` is, for an error.
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
