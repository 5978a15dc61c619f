//! Parsing and printing of the URLs hosts listen at and daemons dial.
//!
//! `tcp://host:port` (IPv6 hosts in brackets, port 0 = any free port),
//! `ipc:///path/to/socket` and, on Linux, `abstract://name`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    Tcp { host: String, port: u16 },
    Ipc(String),
    Abstract(String),
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("invalid URL '{s}': {why}");
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://address"))?;
        match scheme {
            "tcp" => {
                let (host, port) = split_host_port(rest).map_err(|e| bad(&e))?;
                Ok(Url::Tcp { host, port })
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
            "ws" | "wss" | "tls+tcp" => Err(bad(&format!(
                "the {scheme}:// transport is not available in this build"
            ))),
            _ => Err(bad(&format!("unknown scheme '{scheme}'"))),
        }
    }

    /// The same URL with a different port (after binding port 0).
    pub fn with_port(&self, port: u16) -> Url {
        match self {
            Url::Tcp { host, .. } => Url::Tcp {
                host: host.clone(),
                port,
            },
            other => other.clone(),
        }
    }
}

/// Split `host:port` / `[v6]:port`, checking both parts.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
        let p = p.strip_prefix(':').ok_or("missing port")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("'{h}' is not an IPv6 address"));
        }
        (h, p)
    } else {
        s.rsplit_once(':').ok_or("missing port")?
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    if !s.starts_with('[') && host.contains(':') {
        return Err("IPv6 addresses must be in brackets".into());
    }
    if host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!("'{host}' is not a valid host"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
    Ok((host.to_string(), port))
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Url::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Url::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Url::Ipc(p) => write!(f, "ipc://{p}"),
            Url::Abstract(n) => write!(f, "abstract://{n}"),
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
            "ipc:///tmp/x.sock",
            "abstract://mirai-1",
        ] {
            assert_eq!(Url::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_urls_naming_them() {
        for s in [
            "tcp://127.0.0.1",
            "tcp://:5555",
            "tcp://host:99999",
            "tcp://::1:5",
            "tcp://[::1:5",
            "tcp://[zz]:5",
            "http://x:1",
            "nonsense",
            "ipc://",
            "abstract://",
        ] {
            let e = Url::parse(s).unwrap_err();
            assert!(e.contains(s), "{e}");
        }
    }

    #[test]
    fn port_substitution() {
        let u = Url::parse("tcp://[::1]:0").unwrap().with_port(4242);
        assert_eq!(u.to_string(), "tcp://[::1]:4242");
    }
}
