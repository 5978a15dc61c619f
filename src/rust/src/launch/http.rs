//! A minimal HTTP/1.1 client for launching daemons through an HTTP API
//! (`http_config()`): one request, the status code back. Plain `http://`
//! only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The parts of an `http://host[:port][/path]` URL.
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("'{url}': only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("'{url}': invalid port"))
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}': unclosed ["))?;
        match after.strip_prefix(':') {
            Some(p) => (h, parse_port(p)?),
            None if after.is_empty() => (h, 80),
            None => return Err(format!("'{url}': invalid host")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return Err(format!("'{url}': no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

/// Send one request; returns the response's status code.
pub fn request(
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let (host, port, path) = split_url(url)?;
    let bad = |s: &str| s.contains(['\r', '\n']);
    if bad(method) || method.is_empty() || headers.iter().any(|(k, v)| bad(k) || bad(v)) {
        return Err("HTTP method and headers must be single lines".into());
    }
    let io = |e: std::io::Error| format!("HTTP request to '{url}' failed: {e}");
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(io)?
        .next()
        .ok_or_else(|| format!("'{url}': host not found"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut status_line = String::new();
    BufReader::new(&s).read_line(&mut status_line).map_err(io)?;
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("HTTP request to '{url}': no valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(
            split_url("http://api.example.com/v1/jobs").unwrap(),
            ("api.example.com".into(), 80, "/v1/jobs".into())
        );
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1".into(), 8080, "/".into())
        );
        assert_eq!(
            split_url("http://[::1]:81/x").unwrap(),
            ("::1".into(), 81, "/x".into())
        );
        assert_eq!(
            split_url("http://[::1]").unwrap(),
            ("::1".into(), 80, "/".into())
        );
        assert!(split_url("https://example.com").is_err());
        assert!(split_url("http://:80/").is_err());
        assert!(split_url("http://h:notaport/").is_err());
    }

    #[test]
    fn a_request_reaches_a_server_and_its_status_comes_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut lines = Vec::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                if l == "\r\n" {
                    break;
                }
                lines.push(l.trim_end().to_string());
            }
            let mut body = vec![0u8; 5];
            std::io::Read::read_exact(&mut r, &mut body).unwrap();
            c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            (lines, body)
        });
        let code = request(
            &format!("http://127.0.0.1:{port}/launch"),
            "POST",
            &[("X-Token".into(), "abc".into())],
            b"hello",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(code, 201);
        let (lines, body) = server.join().unwrap();
        assert_eq!(lines[0], "POST /launch HTTP/1.1");
        assert!(lines.contains(&"X-Token: abc".to_string()));
        assert!(lines.contains(&"Content-Length: 5".to_string()));
        assert_eq!(body, b"hello");
        assert!(request(
            "http://127.0.0.1:1/",
            "GET\r\nX: y",
            &[],
            b"",
            Duration::from_secs(1)
        )
        .is_err());
    }
}
