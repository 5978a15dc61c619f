//! A minimal HTTP/1.1 client for launching daemons through an HTTP API
//! (`http_config()`) and for the Posit Workbench look-up of compute
//! environments: one request on a fresh connection (`Connection: close`),
//! over plain `http://` or `https://` (rustls, verifying the server against
//! the system's certificate authorities or the ones given), and the status
//! code, headers and body back.
//!
//! A request runs on the crate's runtime ([`start`]); whoever waits for it
//! wakes in slices ([`Pending::wait`]) and may give up at any time
//! (dropping the [`Pending`] aborts the request). Every request has one
//! deadline for everything (resolving, connecting, the TLS handshake,
//! sending, receiving), and a response is bounded in size: a server that
//! stalls, floods or answers nonsense ends the request with an error.

use std::fmt;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most a response's status line and headers may take.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most a response's body may take.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// The most one line of chunked framing (a chunk size or a trailer) may take.
const MAX_LINE: usize = 4096;
/// The most interim (1xx) answers accepted before the response.
const MAX_INTERIM: usize = 16;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL cannot be requested.
    Url(String),
    /// The method or a header cannot be sent.
    Request(String),
    /// The host name could not be resolved, or no connection was made.
    Connect(String),
    /// The TLS settings are unusable, or the handshake or the server's
    /// certificate failed.
    Tls(String),
    /// Reading or writing failed after connecting.
    Io(String),
    /// No complete response within the deadline.
    TimedOut(Duration),
    /// The response's head or body is larger than allowed.
    TooLarge(&'static str, usize),
    /// The response is not valid HTTP/1.x.
    Malformed(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Url(m) | HttpError::Request(m) => f.write_str(m),
            HttpError::Connect(m) => write!(f, "cannot connect: {m}"),
            HttpError::Tls(m) => write!(f, "TLS: {m}"),
            HttpError::Io(m) => write!(f, "connection failed: {m}"),
            HttpError::TimedOut(d) => write!(f, "no response within {} s", d.as_secs_f64()),
            HttpError::TooLarge(what, max) => {
                write!(f, "the response's {what} exceeds {max} bytes")
            }
            HttpError::Malformed(m) => write!(f, "invalid response: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    scheme: Scheme,
    /// Without brackets for an IPv6 address.
    host: String,
    port: u16,
    /// The request target: the path and query (at least "/").
    path: String,
}

impl Target {
    /// The value of the `Host` header.
    fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn parse_url(url: &str) -> Result<Target, HttpError> {
    let bad = |why: &str| HttpError::Url(format!("invalid URL '{url}': {why}"));
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("http") => (Scheme::Http, rest),
        Some((s, rest)) if s.eq_ignore_ascii_case("https") => (Scheme::Https, rest),
        _ => return Err(bad("only http:// and https:// URLs are supported")),
    };
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("spaces and control characters must be percent-encoded"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported: use `headers`",
        ));
    }
    let parse_port = |p: &str| match p {
        "" => Ok(scheme.default_port()),
        p if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad("invalid port")),
            Ok(n) => Ok(n),
        },
        _ => Err(bad("invalid port")),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, parse_port(p)?),
            None if after.is_empty() => (h, scheme.default_port()),
            None => return Err(bad("invalid host")),
        }
    } else {
        let (h, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (authority, scheme.default_port()),
        };
        if h.contains([':', '[', ']']) {
            return Err(bad("invalid host"));
        }
        (h, port)
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    // the fragment is not sent
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(Target {
        scheme,
        host: host.to_string(),
        port,
        path,
    })
}

/// RFC 9110 token characters (methods and header names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub method: String,
    /// Name-value pairs, sent in order. `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are set by the client and
    /// ignored here; a `Host` given here replaces the client's.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The deadline for the whole exchange.
    pub timeout: Duration,
    /// For `https://`: the certificate authorities to trust (PEM), instead
    /// of the system's.
    pub ca_pem: Option<String>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Name-value pairs as received (names as sent by the server).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request checked and ready to go.
struct Prepared {
    target: Target,
    head: Vec<u8>,
    body: Vec<u8>,
    head_only: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

fn prepare(req: Request) -> Result<Prepared, HttpError> {
    let target = parse_url(&req.url)?;
    if !is_token(&req.method) {
        return Err(HttpError::Request(format!(
            "invalid HTTP method '{}'",
            req.method.escape_debug()
        )));
    }
    let mut host = target.authority();
    let mut extra = String::new();
    for (name, value) in &req.headers {
        if !is_token(name) {
            return Err(HttpError::Request(format!(
                "invalid HTTP header name '{}'",
                name.escape_debug()
            )));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(HttpError::Request(format!(
                "the value of HTTP header '{name}' must be a single line"
            )));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            host = value.to_string();
        } else if !["content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            extra.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mirai/{}\r\nAccept: */*\r\n{extra}",
        req.method,
        target.path,
        env!("CARGO_PKG_VERSION")
    );
    let bodiless = ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"].contains(&req.method.as_str());
    if !req.body.is_empty() || !bodiless {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let tls = match target.scheme {
        Scheme::Https => Some(
            crate::transport::tls::client_config(req.ca_pem.as_deref()).map_err(HttpError::Tls)?,
        ),
        Scheme::Http => None,
    };
    Ok(Prepared {
        target,
        head: head.into_bytes(),
        body: req.body,
        head_only: req.method == "HEAD",
        tls,
        timeout: req.timeout,
    })
}

/// Send one request and read its response, within its deadline.
async fn run(p: Prepared) -> Result<Response, HttpError> {
    let timeout = p.timeout;
    tokio::time::timeout(timeout, exchange(p))
        .await
        .map_err(|_| HttpError::TimedOut(timeout))?
}

async fn exchange(p: Prepared) -> Result<Response, HttpError> {
    let t = &p.target;
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| HttpError::Connect(format!("{}:{}: {e}", t.host, t.port)))?;
    let _ = tcp.set_nodelay(true);
    match &p.tls {
        None => talk(tcp, &p).await,
        Some(config) => {
            let name = crate::transport::tls::server_name(&t.host).map_err(HttpError::Tls)?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(e.to_string()))?;
            talk(stream, &p).await
        }
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    p: &Prepared,
) -> Result<Response, HttpError> {
    let mut r = Reader {
        s: stream,
        buf: Vec::new(),
        eof: false,
    };
    let io = |e: std::io::Error| HttpError::Io(e.to_string());
    r.s.write_all(&p.head).await.map_err(io)?;
    r.s.write_all(&p.body).await.map_err(io)?;
    r.s.flush().await.map_err(io)?;
    // interim answers (100 Continue, 103 Early Hints) precede the real one
    for _ in 0..=MAX_INTERIM {
        let head = r.head().await?;
        let (status, reason, headers) = parse_head(&head)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut response = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        if !(p.head_only || status == 204 || status == 304 || status == 101) {
            response.body = r.body(&response).await?;
        }
        return Ok(response);
    }
    Err(HttpError::Malformed(format!(
        "more than {MAX_INTERIM} interim (1xx) answers"
    )))
}

/// Buffered reading of a response.
struct Reader<S> {
    s: S,
    /// Received and not yet consumed.
    buf: Vec<u8>,
    eof: bool,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Read more; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk).await {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            // a TLS server that closes without close_notify: the end
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => Err(HttpError::Io(e.to_string())),
        }
    }

    /// Take everything up to (and without) the first `delim`, reading
    /// until it is there; at most `max` bytes before it.
    async fn until(
        &mut self,
        delim: &[u8],
        max: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, HttpError> {
        let mut from = 0;
        loop {
            if let Some(i) = find(&self.buf[from..], delim) {
                let i = from + i;
                if i > max {
                    return Err(HttpError::TooLarge(what, max));
                }
                let taken: Vec<u8> = self.buf.drain(..i + delim.len()).take(i).collect();
                return Ok(taken);
            }
            if self.buf.len() > max + delim.len() {
                return Err(HttpError::TooLarge(what, max));
            }
            from = self.buf.len().saturating_sub(delim.len() - 1);
            if !self.fill().await? {
                return Err(HttpError::Malformed(
                    if self.buf.is_empty() && what == "head" {
                        "the server closed the connection without answering".into()
                    } else {
                        format!("the connection ended within the {what}")
                    },
                ));
            }
        }
    }

    /// Take exactly `n` bytes.
    async fn exactly(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(HttpError::Malformed(
                    "the connection ended before the body was complete".into(),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn head(&mut self) -> Result<Vec<u8>, HttpError> {
        self.until(b"\r\n\r\n", MAX_HEAD, "head").await
    }

    async fn body(&mut self, response: &Response) -> Result<Vec<u8>, HttpError> {
        let chunked = response
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .next_back()
            .map(|coding| coding.eq_ignore_ascii_case("chunked"));
        match chunked {
            Some(true) => return self.chunked().await,
            // another coding last: the body ends with the connection
            Some(false) => return self.until_closed().await,
            None => {}
        }
        match content_length(&response.headers)? {
            Some(n) if n > MAX_BODY as u64 => Err(HttpError::TooLarge("body", MAX_BODY)),
            Some(n) => self.exactly(n as usize).await,
            None => self.until_closed().await,
        }
    }

    async fn until_closed(&mut self) -> Result<Vec<u8>, HttpError> {
        while self.fill().await? {
            if self.buf.len() > MAX_BODY {
                return Err(HttpError::TooLarge("body", MAX_BODY));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    async fn chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.until(b"\r\n", MAX_LINE, "chunk framing").await?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(HttpError::Malformed(format!(
                    "invalid chunk size '{}'",
                    size.escape_debug()
                )));
            }
            // (at most 15 hex digits: no overflow)
            let size = usize::from_str_radix(size, 16).unwrap_or(usize::MAX);
            if size == 0 {
                // trailers, up to the empty line
                let mut total = 0;
                loop {
                    let t = self.until(b"\r\n", MAX_LINE, "chunk framing").await?;
                    total += t.len() + 2;
                    if t.is_empty() {
                        return Ok(body);
                    }
                    if total > MAX_HEAD {
                        return Err(HttpError::TooLarge("trailers", MAX_HEAD));
                    }
                }
            }
            if size > MAX_BODY - body.len() {
                return Err(HttpError::TooLarge("body", MAX_BODY));
            }
            body.extend(self.exactly(size).await?);
            if self.exactly(2).await? != b"\r\n" {
                return Err(HttpError::Malformed("a chunk does not end in CRLF".into()));
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body length a response declares; an error for an invalid or
/// contradictory declaration.
fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for (_, v) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let part = part.trim();
            let n = (!part.is_empty()
                && part.len() <= 19
                && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                HttpError::Malformed(format!("invalid Content-Length '{}'", part.escape_debug()))
            })?;
            if found.is_some_and(|f| f != n) {
                return Err(HttpError::Malformed(
                    "conflicting Content-Length headers".into(),
                ));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// A response head: status code, reason phrase, headers.
type Head = (u16, String, Vec<(String, String)>);

/// The parts of a response head (without its final blank line).
fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let bad_status = || {
        let shown: String = status_line.chars().take(80).collect();
        HttpError::Malformed(format!(
            "not an HTTP/1.x status line: '{}'",
            shown.escape_debug()
        ))
    };
    let rest = status_line
        .strip_prefix("HTTP/1.")
        .filter(|r| r.starts_with(['0', '1']))
        .ok_or_else(bad_status)?;
    let mut parts = rest[1..].splitn(3, ' ');
    let (sp, code, reason) = (parts.next(), parts.next(), parts.next());
    if sp != Some("") {
        return Err(bad_status());
    }
    let code = code
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(bad_status)?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            let shown: String = line.chars().take(80).collect();
            HttpError::Malformed(format!("invalid header line '{}'", shown.escape_debug()))
        })?;
        if !is_token(name) {
            return Err(HttpError::Malformed(format!(
                "invalid header name '{}'",
                name.escape_debug()
            )));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok((code, reason.unwrap_or("").to_string(), headers))
}

/// A request running on the runtime.
pub struct Pending {
    rx: mpsc::Receiver<Result<Response, HttpError>>,
    task: tokio::task::JoinHandle<()>,
}

/// Start a request on the runtime. Errors in the request itself (URL,
/// method, headers, TLS settings) come back at once.
pub fn start(req: Request) -> Result<Pending, HttpError> {
    let prepared = prepare(req)?;
    let (tx, rx) = mpsc::channel();
    let task = crate::runtime::runtime().spawn(async move {
        let _ = tx.send(run(prepared).await);
    });
    Ok(Pending { rx, task })
}

impl Pending {
    /// Wait at most `slice` for the outcome: `None` if it is not there yet.
    pub fn wait(&self, slice: Duration) -> Option<Result<Response, HttpError>> {
        match self.rx.recv_timeout(slice) {
            Ok(r) => Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(HttpError::Io(
                "the request ended without an outcome".into(),
            ))),
        }
    }

    /// Wait for the outcome, however long it takes (within the request's
    /// own deadline).
    pub fn finish(self) -> Result<Response, HttpError> {
        loop {
            if let Some(r) = self.wait(Duration::from_secs(1)) {
                return r;
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // given up on (or done): nothing is left running
        self.task.abort();
    }
}

/// Send one request and wait for its response.
pub fn request(req: Request) -> Result<Response, HttpError> {
    start(req)?.finish()
}

/// The PEM text of a CA file given for `https://` requests.
pub fn read_ca_file(path: &str) -> Result<String, HttpError> {
    std::fs::read_to_string(path)
        .map_err(|e| HttpError::Tls(format!("cannot read the CA file '{path}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    fn target(url: &str) -> (Scheme, String, u16, String) {
        let t = parse_url(url).unwrap();
        (t.scheme, t.host, t.port, t.path)
    }

    #[test]
    fn urls_split_into_scheme_host_port_and_path() {
        use Scheme::*;
        assert_eq!(
            target("http://api.example.com/v1/jobs"),
            (Http, "api.example.com".into(), 80, "/v1/jobs".into())
        );
        assert_eq!(
            target("https://api.example.com"),
            (Https, "api.example.com".into(), 443, "/".into())
        );
        assert_eq!(
            target("HTTP://127.0.0.1:8080?x=1#frag"),
            (Http, "127.0.0.1".into(), 8080, "/?x=1".into())
        );
        assert_eq!(
            target("https://[::1]:81/x#y"),
            (Https, "::1".into(), 81, "/x".into())
        );
        assert_eq!(target("http://[::1]").2, 80);
        assert_eq!(target("http://h:/p").2, 80);
        for bad in [
            "ftp://example.com",
            "example.com",
            "http://:80/",
            "http://h:notaport/",
            "http://h:0/",
            "http://h:70000/",
            "http://user:pw@h/",
            "http://[::1/",
            "http://[zz]/",
            "http://h/a b",
            "http://h/\n",
            "http://a:b:c/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(HttpError::Url(_))),
                "accepted {bad}"
            );
        }
        let t = parse_url("http://[::1]:8080/").unwrap();
        assert_eq!(t.authority(), "[::1]:8080");
        assert_eq!(parse_url("https://h:443/").unwrap().authority(), "h");
    }

    fn req(url: &str) -> Request {
        Request {
            url: url.into(),
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(5),
            ca_pem: None,
        }
    }

    #[test]
    fn methods_and_headers_are_checked() {
        let mut r = req("http://127.0.0.1:1/");
        r.method = "GET /x HTTP/1.1\r\nX: y".into();
        assert!(matches!(start(r), Err(HttpError::Request(_))));
        let mut r = req("http://127.0.0.1:1/");
        r.headers = vec![("X-A".into(), "v\r\nInjected: yes".into())];
        assert!(matches!(start(r), Err(HttpError::Request(_))));
        let mut r = req("http://127.0.0.1:1/");
        r.headers = vec![("Bad Name".into(), "v".into())];
        assert!(matches!(start(r), Err(HttpError::Request(_))));
        let mut r = req("http://127.0.0.1:1/");
        r.headers = vec![("".into(), "v".into())];
        assert!(matches!(start(r), Err(HttpError::Request(_))));
    }

    /// The request a server received: its head lines and body.
    type Seen = (Vec<String>, Vec<u8>);

    fn read_request(c: &mut impl Read) -> std::io::Result<Seen> {
        let mut r = BufReader::new(c);
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l)?;
            if l == "\r\n" || l.is_empty() {
                break;
            }
            lines.push(l.trim_end().to_string());
        }
        let len = lines
            .iter()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        Ok((lines, body))
    }

    /// The first connection to `l` within 10 s (so that a test whose
    /// client never connects still ends).
    fn accept(l: &TcpListener) -> Option<std::net::TcpStream> {
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match l.accept() {
                Ok((c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    return Some(c);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        None
    }

    /// A one-connection plain server that answers `reply` (sent in pieces
    /// of `piece` bytes) and hands back the request it saw.
    fn serve(reply: Vec<u8>, piece: usize) -> (u16, std::thread::JoinHandle<Seen>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let seen = read_request(&mut c).unwrap();
            for p in reply.chunks(piece.max(1)) {
                if c.write_all(p).is_err() {
                    break;
                }
                let _ = c.flush();
            }
            seen
        });
        (port, h)
    }

    #[test]
    fn a_post_reaches_the_server_and_status_headers_and_body_come_back() {
        let (port, server) = serve(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"id\":\"42\"}"
                .to_vec(),
            4,
        );
        let mut r = req(&format!("http://127.0.0.1:{port}/launch?x=1"));
        r.method = "POST".into();
        r.headers = vec![
            ("X-Token".into(), "abc".into()),
            ("Content-Length".into(), "999".into()),
        ];
        r.body = b"hello".to_vec();
        let res = request(r).unwrap();
        assert_eq!(res.status, 201);
        assert_eq!(res.reason, "Created");
        assert_eq!(res.header("content-type"), Some("application/json"));
        assert_eq!(res.body, b"{\"id\":\"42\"}");
        let (lines, body) = server.join().unwrap();
        assert_eq!(lines[0], "POST /launch?x=1 HTTP/1.1");
        assert!(lines.contains(&format!("Host: 127.0.0.1:{port}")));
        assert!(lines.contains(&"X-Token: abc".to_string()));
        assert!(lines.contains(&"Content-Length: 5".to_string()));
        assert!(!lines.contains(&"Content-Length: 999".to_string()));
        assert!(lines.contains(&"Connection: close".to_string()));
        assert_eq!(body, b"hello");
    }

    #[test]
    fn a_get_sends_no_body_and_reads_to_the_end_without_a_length() {
        let (port, server) = serve(
            b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of this until close".to_vec(),
            3,
        );
        let res = request(req(&format!("http://localhost:{port}/api/x"))).unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.body, b"all of this until close");
        let (lines, body) = server.join().unwrap();
        assert_eq!(lines[0], "GET /api/x HTTP/1.1");
        assert!(!lines.iter().any(|l| l.starts_with("Content-Length")));
        assert!(body.is_empty());
    }

    #[test]
    fn chunked_bodies_and_interim_answers_are_understood() {
        let (port, server) = serve(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
            5,
        );
        let res = request(req(&format!("http://127.0.0.1:{port}/"))).unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.body, b"hello, world");
        server.join().unwrap();
    }

    #[test]
    fn non_2xx_answers_come_back_as_they_are() {
        let (port, server) = serve(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec(),
            100,
        );
        let res = request(req(&format!("http://127.0.0.1:{port}/"))).unwrap();
        assert_eq!((res.status, res.body.as_slice()), (404, &b"not found"[..]));
        server.join().unwrap();
    }

    fn outcome(reply: &[u8]) -> Result<Response, HttpError> {
        let (port, server) = serve(reply.to_vec(), 1000);
        let r = request(req(&format!("http://127.0.0.1:{port}/")));
        server.join().unwrap();
        r
    }

    #[test]
    fn malformed_answers_are_clean_errors() {
        let malformed = |reply: &[u8]| {
            let r = outcome(reply);
            assert!(
                matches!(r, Err(HttpError::Malformed(_))),
                "{:?} gave {r:?}",
                String::from_utf8_lossy(reply)
            );
        };
        malformed(b"");
        malformed(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
        malformed(b"HTTP/2 200\r\n\r\n");
        malformed(b"HTTP/1.1 20 OK\r\n\r\n");
        malformed(b"HTTP/1.1 999 Huh\r\n\r\n");
        malformed(b"HTTP/1.1 200OK\r\n\r\n");
        malformed(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n");
        malformed(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n");
        malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
        malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        malformed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        malformed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcde");
        malformed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
        malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n");
        malformed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
        );
    }

    #[test]
    fn oversized_answers_are_refused() {
        let too_large = |r: Result<Response, HttpError>| {
            assert!(matches!(r, Err(HttpError::TooLarge(..))), "{r:?}");
        };
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        too_large(outcome(&head));
        too_large(outcome(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .as_bytes(),
        ));
        // a body without a length that goes on and on
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let flood = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let _ = read_request(&mut c);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let junk = vec![b'x'; 64 * 1024];
            while c.write_all(&junk).is_ok() {}
        });
        too_large(request(req(&format!("http://127.0.0.1:{port}/"))));
        flood.join().unwrap();
        // the same in chunks
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let flood = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let _ = read_request(&mut c);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            let mut chunk = b"10000\r\n".to_vec();
            chunk.extend(vec![b'x'; 0x10000]);
            chunk.extend_from_slice(b"\r\n");
            while c.write_all(&chunk).is_ok() {}
        });
        too_large(request(req(&format!("http://127.0.0.1:{port}/"))));
        flood.join().unwrap();
    }

    #[test]
    fn a_silent_or_slow_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let silent = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let _ = read_request(&mut c);
            // trickle an endless head, never finishing it
            for _ in 0..100 {
                if c.write_all(b"X").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut r = req(&format!("http://127.0.0.1:{port}/"));
        r.timeout = Duration::from_millis(600);
        let t0 = std::time::Instant::now();
        assert_eq!(
            request(r).unwrap_err(),
            HttpError::TimedOut(Duration::from_millis(600))
        );
        assert!(t0.elapsed() < Duration::from_secs(3));
        silent.join().unwrap();
    }

    #[test]
    fn a_refused_connection_is_a_connect_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let r = request(req(&format!("http://127.0.0.1:{port}/")));
        assert!(matches!(r, Err(HttpError::Connect(_))), "{r:?}");
    }

    #[test]
    fn giving_up_on_a_pending_request_stops_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let _ = read_request(&mut c);
            // the client going away ends the connection: reading sees EOF
            let mut rest = Vec::new();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.read_to_end(&mut rest).is_ok()
        });
        let mut r = req(&format!("http://127.0.0.1:{port}/"));
        r.timeout = Duration::from_secs(60);
        let p = start(r).unwrap();
        assert!(p.wait(Duration::from_millis(200)).is_none());
        drop(p);
        assert!(server.join().unwrap());
    }

    /// A one-connection TLS server (certificate from a single-use
    /// authority naming 127.0.0.1) answering `reply`; returns its port,
    /// the authority's PEM and the request it saw.
    fn serve_tls(reply: &'static [u8]) -> (u16, String, std::thread::JoinHandle<Option<Seen>>) {
        let creds = crate::transport::tls::zero_config("127.0.0.1").unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let config = creds.config.clone();
        let h = std::thread::spawn(move || {
            let mut tcp = accept(&l)?;
            let mut conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            let seen = read_request(&mut tls).ok()?;
            tls.write_all(reply).ok()?;
            tls.conn.send_close_notify();
            let _ = tls.flush();
            Some(seen)
        });
        (port, creds.ca_pem.unwrap(), h)
    }

    #[test]
    fn https_with_a_trusted_authority() {
        let (port, ca, server) = serve_tls(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure");
        let mut r = req(&format!("https://127.0.0.1:{port}/jobs"));
        r.method = "POST".into();
        r.body = b"{\"a\":1}".to_vec();
        r.ca_pem = Some(ca);
        let res = request(r).unwrap();
        assert_eq!((res.status, res.body.as_slice()), (200, &b"secure"[..]));
        let (lines, body) = server.join().unwrap().unwrap();
        assert_eq!(lines[0], "POST /jobs HTTP/1.1");
        assert_eq!(body, b"{\"a\":1}");
    }

    #[test]
    fn https_refuses_an_untrusted_certificate() {
        // the system's authorities never signed the single-use one
        let (port, _ca, server) = serve_tls(b"HTTP/1.1 200 OK\r\n\r\n");
        let r = request(req(&format!("https://127.0.0.1:{port}/")));
        assert!(matches!(r, Err(HttpError::Tls(_))), "{r:?}");
        assert!(server.join().unwrap().is_none());
        // another authority: refused too
        let other = crate::transport::tls::zero_config("127.0.0.1")
            .unwrap()
            .ca_pem;
        let (port, _ca, server) = serve_tls(b"HTTP/1.1 200 OK\r\n\r\n");
        let mut r = req(&format!("https://127.0.0.1:{port}/"));
        r.ca_pem = other;
        let e = request(r).unwrap_err();
        assert!(
            matches!(&e, HttpError::Tls(m) if m.contains("certificate")),
            "{e:?}"
        );
        assert!(server.join().unwrap().is_none());
    }

    #[test]
    fn https_to_a_plain_server_fails_cleanly() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut c = accept(&l).unwrap();
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        });
        let e = request(req(&format!("https://127.0.0.1:{port}/"))).unwrap_err();
        assert!(matches!(e, HttpError::Tls(_)), "{e:?}");
        server.join().unwrap();
    }

    #[test]
    fn a_bad_ca_file_is_an_error() {
        let mut r = req("https://127.0.0.1:1/");
        r.ca_pem = Some("not a certificate".into());
        assert!(matches!(start(r), Err(HttpError::Tls(_))));
        assert!(read_ca_file("/nonexistent/mirai-ca.pem").is_err());
    }
}
