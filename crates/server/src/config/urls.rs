//! The URLs of etcd's URL flags (`--listen-client-urls`,
//! `--initial-cluster`, ...), read with the `url` crate and held to what
//! etcd accepts (`types.NewURLs`): an `http` or `https` scheme, a host and
//! an explicit port, no path. Unix sockets, which etcd also serves, are not
//! supported.
//!
//! A URL keeps the text it was given (less a trailing `/`): member ids are
//! derived from peer URLs as written, so a URL is never rewritten into the
//! `url` crate's normal form (which would change every member's id).

use super::{bad, ConfigError};
use std::net::SocketAddr;
use url::{Host, Url};

/// One URL of a flag, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagUrl {
    /// The URL as given, without a trailing `/`.
    pub text: String,
    /// Whether it serves or reaches TLS (`https`).
    pub tls: bool,
    /// The host: a name or an IP address (an IPv6 one without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    url: Url,
}

impl FlagUrl {
    /// `host:port`, with an IPv6 address in brackets.
    pub fn host_port(&self) -> String {
        match self.url.host() {
            Some(Host::Ipv6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The socket address the URL names (resolving a host name, IPv4
    /// preferred). `flag` names the flag in the error.
    pub fn resolve(&self, flag: &str) -> Result<SocketAddr, ConfigError> {
        let addrs = self
            .url
            .socket_addrs(|| None)
            .map_err(|e| bad(format!("--{flag}: cannot resolve {}: {e}", self.host_port())))?;
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| bad(format!("--{flag}: {} resolves to no address", self.host_port())))
    }
}

/// Reads one URL of flag `--{flag}`.
pub fn parse(flag: &str, text: &str) -> Result<FlagUrl, ConfigError> {
    let text = text.trim();
    let shape = "http://host:port or https://host:port";
    let url = Url::parse(text).map_err(|e| bad(format!("--{flag}: {text:?} is not a URL like {shape} ({e})")))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        "unix" | "unixs" => {
            return Err(bad(format!("--{flag}: {text:?}: unix sockets are not supported; use {shape}")));
        }
        other => return Err(bad(format!("--{flag}: {text:?} has scheme {other:?}; it must be {shape}"))),
    };
    let host = match url.host() {
        Some(Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(Host::Ipv4(a)) => a.to_string(),
        Some(Host::Ipv6(a)) => a.to_string(),
        _ => return Err(bad(format!("--{flag}: {text:?} has no host:port"))),
    };
    // The url crate drops a port that is the scheme's default (http://h:80
    // reads as http://h), so look for one written in the text itself.
    let port = match url.port() {
        Some(p) => p,
        None if writes_a_port(text) => url.port_or_known_default().unwrap_or_default(),
        None => return Err(bad(format!("--{flag}: {text:?} has no host:port (etcd requires the port)"))),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(format!("--{flag}: {text:?} must not contain a user or password")));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!("--{flag}: {text:?} must not contain a path, query or fragment")));
    }
    Ok(FlagUrl { text: text.trim_end_matches('/').to_string(), tls, host, port, url })
}

/// Reads a comma-separated list of URLs, refusing an empty one.
pub fn parse_list(flag: &str, value: &str) -> Result<Vec<FlagUrl>, ConfigError> {
    let urls = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(flag, s))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(bad(format!("--{flag} needs at least one URL")));
    }
    Ok(urls)
}

/// Whether the authority of `scheme://authority/...` ends in `:digits`.
fn writes_a_port(text: &str) -> bool {
    let rest = text.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_etcd_accepts_are_read_as_given() {
        let table: &[(&str, bool, &str, u16, &str)] = &[
            ("http://127.0.0.1:2379", false, "127.0.0.1", 2379, "http://127.0.0.1:2379"),
            ("https://localhost:2380/", true, "localhost", 2380, "https://localhost:2380"),
            ("http://[::1]:2379", false, "::1", 2379, "http://[::1]:2379"),
            ("http://10.0.0.1:80", false, "10.0.0.1", 80, "http://10.0.0.1:80"),
            ("https://etcd.example:443", true, "etcd.example", 443, "https://etcd.example:443"),
            (" HTTP://Infra1:2380 ", false, "infra1", 2380, "HTTP://Infra1:2380"),
        ];
        for &(text, tls, host, port, kept) in table {
            let u = parse("listen-client-urls", text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((u.tls, u.host.as_str(), u.port, u.text.as_str()), (tls, host, port, kept), "{text}");
        }
        assert_eq!(parse("f", "http://[::1]:2379").unwrap().host_port(), "[::1]:2379");
    }

    #[test]
    fn urls_etcd_refuses_are_refused_naming_the_flag_and_the_value() {
        let table: &[(&str, &str)] = &[
            ("127.0.0.1:2379", "is not a URL like http://host:port"),
            ("localhost:2379", "has scheme \"localhost\""),
            ("unix://x:1", "unix sockets are not supported"),
            ("ftp://h:1", "has scheme \"ftp\""),
            ("http://h", "has no host:port"),
            ("https://h", "has no host:port"),
            ("http://:2379", "is not a URL"),
            ("http://h:99999", "is not a URL"),
            ("http://h:1/path", "must not contain a path"),
            ("http://h:1?x=1", "must not contain a path"),
            ("http://u:p@h:1", "user or password"),
        ];
        for &(text, want) in table {
            let err = parse("listen-peer-urls", text).unwrap_err().to_string();
            assert!(err.starts_with("--listen-peer-urls: "), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")) && err.contains(want), "{text}: {err}");
        }
        assert!(parse_list("advertise-client-urls", " , ").unwrap_err().to_string().contains("at least one URL"));
    }

    #[test]
    fn an_ip_url_resolves_to_itself() {
        let u = parse("f", "http://127.0.0.1:2379").unwrap();
        assert_eq!(u.resolve("f").unwrap(), "127.0.0.1:2379".parse().unwrap());
        let u = parse("f", "http://[::1]:2379").unwrap();
        assert_eq!(u.resolve("f").unwrap(), "[::1]:2379".parse().unwrap());
    }
}
