//! Parsing and printing of the URLs hosts listen at and daemons dial.
//!
//! `tcp://host:port` (IPv6 hosts in brackets, port 0 = any free port),
//! `tls+tcp://host:port`, `ws://host[:port][/path]`, `wss://...` (ports 80
//! and 443 when omitted), `ipc:///path/to/socket`, on Linux
//! `abstract://name`, and `inproc://name` (synchronous profiles only). An
//! empty host, or `*`, listens on every interface and stays empty when the
//! URL is printed.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// A TCP connection, under TLS when `tls`, carrying a websocket at
    /// the path `ws` when that is set (possibly empty).
    Tcp {
        host: String,
        port: u16,
        tls: bool,
        ws: Option<String>,
    },
    Ipc(String),
    Abstract(String),
    Inproc(String),
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub url: String,
    pub why: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid URL '{}': {}", self.url, self.why)
    }
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let bad = |why: &str| UrlError {
            url: s.to_string(),
            why: why.to_string(),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://address"))?;
        match scheme {
            "tcp" | "tls+tcp" => {
                if rest.contains('/') {
                    return Err(bad("a tcp URL has no path"));
                }
                let (host, port) = split_host_port(rest, None).map_err(|e| bad(&e))?;
                Ok(Url::Tcp {
                    host,
                    port,
                    tls: scheme == "tls+tcp",
                    ws: None,
                })
            }
            "ws" | "wss" => {
                let (address, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                if path.contains(char::is_whitespace) {
                    return Err(bad("the path may not contain spaces"));
                }
                let default = if scheme == "wss" { 443 } else { 80 };
                let (host, port) = split_host_port(address, Some(default)).map_err(|e| bad(&e))?;
                Ok(Url::Tcp {
                    host,
                    port,
                    tls: scheme == "wss",
                    ws: Some(path.to_string()),
                })
            }
            "ipc" => {
                if rest.is_empty() {
                    return Err(bad("empty socket path"));
                }
                Ok(Url::Ipc(rest.to_string()))
            }
            "abstract" => {
                if !cfg!(target_os = "linux") {
                    return Err(bad("abstract sockets exist only on Linux"));
                }
                if rest.is_empty() || rest.len() > 100 {
                    return Err(bad("name must have 1 to 100 characters"));
                }
                Ok(Url::Abstract(rest.to_string()))
            }
            "inproc" => {
                if rest.is_empty() {
                    return Err(bad("empty name"));
                }
                Ok(Url::Inproc(rest.to_string()))
            }
            _ => Err(bad(&format!("unknown scheme '{scheme}'"))),
        }
    }

    /// The same URL with a different port (after binding port 0).
    pub fn with_port(&self, port: u16) -> Url {
        let mut url = self.clone();
        if let Url::Tcp { port: p, .. } = &mut url {
            *p = port;
        }
        url
    }

    /// Whether the URL's connections are encrypted.
    pub fn is_secure(&self) -> bool {
        matches!(self, Url::Tcp { tls: true, .. })
    }
}

/// Split `host:port` / `[v6]:port` / `host` (when a default port is
/// given), checking both parts. The host may be empty or `*` (any
/// interface, returned as empty).
fn split_host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{h}' is not an IPv6 address"));
        }
        let port = match p.strip_prefix(':') {
            Some(p) => Some(p),
            None if p.is_empty() && default_port.is_some() => None,
            None => return Err("missing port".into()),
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None if default_port.is_some() => (s, None),
            None => return Err("missing port".into()),
        }
    };
    if !s.starts_with('[') && host.contains(':') {
        return Err("IPv6 addresses must be in brackets".into());
    }
    if host.contains(['/', '@', '[', ']']) || host.contains(char::is_whitespace) {
        return Err(format!("'{host}' is not a valid host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("'{p}' is not a port number (0-65535)"))?,
        None => default_port.expect("checked above"),
    };
    let host = if host == "*" { "" } else { host };
    Ok((host.to_string(), port))
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Url::Tcp {
                host,
                port,
                tls,
                ws,
            } => {
                let scheme = match (tls, ws.is_some()) {
                    (false, false) => "tcp",
                    (true, false) => "tls+tcp",
                    (false, true) => "ws",
                    (true, true) => "wss",
                };
                let path = ws.as_deref().unwrap_or("");
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}{path}")
                } else {
                    write!(f, "{scheme}://{host}:{port}{path}")
                }
            }
            Url::Ipc(p) => write!(f, "ipc://{p}"),
            Url::Abstract(n) => write!(f, "abstract://{n}"),
            Url::Inproc(n) => write!(f, "inproc://{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in [
            "tcp://127.0.0.1:5555",
            "tcp://[::1]:0",
            "tcp://localhost:80",
            "tcp://:5555",
            "ipc:///tmp/x.sock",
            "abstract://mirai-1",
            "inproc://0123456789abcdef01234567",
            "tls+tcp://10.0.0.1:5555",
            "ws://[::1]:80/",
            "ws://host:80/daemons/a",
            "ws://:0",
            "wss://127.0.0.1:0/x",
        ] {
            assert_eq!(Url::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn wildcards_and_default_ports() {
        assert_eq!(Url::parse("tcp://*:1").unwrap().to_string(), "tcp://:1");
        assert_eq!(Url::parse("ws://h/x").unwrap().to_string(), "ws://h:80/x");
        assert_eq!(Url::parse("wss://h").unwrap().to_string(), "wss://h:443");
        assert_eq!(
            Url::parse("ws://[::1]").unwrap().to_string(),
            "ws://[::1]:80"
        );
    }

    #[test]
    fn rejects_bad_urls_naming_them() {
        for s in [
            "tcp://127.0.0.1",
            "tcp://host:99999",
            "tcp://::1:5",
            "tcp://[::1:5",
            "tcp://[zz]:5",
            "tcp://h:1/path",
            "http://x:1",
            "nonsense",
            "ipc://",
            "abstract://",
            "inproc://",
            "ws://h:1/a b",
            "ws://h:x/a",
        ] {
            let e = Url::parse(s).unwrap_err();
            assert!(e.to_string().contains(s), "{e}");
        }
    }

    #[test]
    fn port_substitution_keeps_the_rest() {
        let u = Url::parse("tcp://[::1]:0").unwrap().with_port(4242);
        assert_eq!(u.to_string(), "tcp://[::1]:4242");
        let u = Url::parse("wss://h:0/p").unwrap().with_port(7);
        assert_eq!(u.to_string(), "wss://h:7/p");
        assert!(u.is_secure());
        assert_eq!(
            Url::parse("ws://:0").unwrap().with_port(9).to_string(),
            "ws://:9"
        );
    }
}
