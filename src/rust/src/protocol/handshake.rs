//! The opening of a connection, which authenticates both sides. The
//! daemon sends HELLO (magic, protocol version, package version and a
//! fresh 32-byte nonce). A host with a secret answers CHALLENGE: its own
//! fresh nonce and its proof, an HMAC-SHA256 keyed with the secret over a
//! host-direction label and both nonces. A daemon with a secret checks
//! that proof before anything else and refuses a host that fails it or
//! skips the challenge; otherwise it answers PROOF, the same HMAC with a
//! daemon-direction label, which the host checks. The secret never
//! crosses the network; a recorded proof is worthless for the next pair
//! of nonces, and the labels keep a proof of one side from ever passing
//! as the other's. A wrong daemon proof is dropped without a word.
//! Finally the host answers WELCOME, carrying the daemon's set-up, or
//! REJECT with a reason, and closes. A WELCOME may announce that a SERIAL
//! message (the profile's serialization configuration) follows it, before
//! anything else.
//!
//! ```text
//! HELLO     magic[6] | protocol u16 | n u8 | package[n] | daemon nonce[32]
//! CHALLENGE host nonce[32] | host proof[32]
//! PROOF     daemon proof[32]
//! proofs:   HMAC-SHA256(secret, label | daemon nonce | host nonce)
//! ```

use super::frame::{invalid, Frame};
use super::message::{CHALLENGE, HELLO, WELCOME};
use std::io;

pub const MAGIC: &[u8; 6] = b"MIRAI\x00";
/// Bumped whenever the framing or message layout changes.
pub const PROTOCOL_VERSION: u16 = 7;
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bytes in a nonce and in a proof.
pub const PROOF_LEN: usize = 32;
pub type Nonce = [u8; PROOF_LEN];

/// The labels that bind a proof to the side that makes it.
const HOST_LABEL: &[u8] = b"mirai handshake v6: host proves to daemon\0";
const DAEMON_LABEL: &[u8] = b"mirai handshake v6: daemon proves to host\0";

/// The daemon's opening message: magic, protocol version, package
/// version (length-prefixed) and the daemon's nonce.
pub fn hello_body(protocol: u16, package: &str, nonce: &Nonce) -> Vec<u8> {
    let package = &package.as_bytes()[..package.len().min(255)];
    let mut b = Vec::with_capacity(MAGIC.len() + 3 + package.len() + PROOF_LEN);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&protocol.to_le_bytes());
    b.push(package.len() as u8);
    b.extend_from_slice(package);
    b.extend_from_slice(nonce);
    b
}

/// What a HELLO says, if it is one of ours at all. Daemons before
/// protocol 6 sent no nonce; their HELLO still parses, so they can be
/// told of the version mismatch.
#[derive(Debug, PartialEq)]
pub struct Hello {
    pub protocol: u16,
    pub package: String,
    pub nonce: Option<Nonce>,
}

pub fn parse_hello(frame: &Frame) -> io::Result<Hello> {
    let b = &frame.body;
    let at = MAGIC.len();
    if frame.kind != HELLO || b.len() < at + 3 || &b[..at] != MAGIC {
        return Err(invalid("not a mirai handshake"));
    }
    let protocol = u16::from_le_bytes([b[at], b[at + 1]]);
    let n = b[at + 2] as usize;
    let rest = &b[at + 3..];
    let nonce = match rest.len().checked_sub(n) {
        Some(0) => None,
        Some(PROOF_LEN) => Some(rest[n..].try_into().expect("a nonce")),
        _ => return Err(invalid("malformed handshake")),
    };
    let package = std::str::from_utf8(&rest[..n])
        .map_err(|_| invalid("package version is not UTF-8"))?
        .to_string();
    Ok(Hello {
        protocol,
        package,
        nonce,
    })
}

/// The host's verdict on a HELLO: `Ok` to go on, or the reason to refuse.
pub fn check_hello(hello: &Hello) -> Result<(), String> {
    if hello.protocol != PROTOCOL_VERSION || hello.package != PACKAGE_VERSION {
        return Err(format!(
            "version mismatch: host runs mirai {} (protocol {}), daemon runs mirai {} (protocol {})",
            PACKAGE_VERSION, PROTOCOL_VERSION, hello.package, hello.protocol
        ));
    }
    Ok(())
}

/// A fresh nonce.
pub fn new_nonce() -> io::Result<Nonce> {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; PROOF_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| io::Error::other("no system randomness"))?;
    Ok(nonce)
}

/// Which side a proof is made by: each has its own label, so a proof is
/// never valid for the other direction (it cannot be reflected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Host,
    Daemon,
}

fn proof_input(side: Side, daemon_nonce: &Nonce, host_nonce: &Nonce) -> Vec<u8> {
    let label = match side {
        Side::Host => HOST_LABEL,
        Side::Daemon => DAEMON_LABEL,
    };
    [label, &daemon_nonce[..], &host_nonce[..]].concat()
}

/// The proof `side` makes of knowing `secret`, for this pair of nonces.
pub fn proof(secret: &[u8], side: Side, daemon_nonce: &Nonce, host_nonce: &Nonce) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let msg = proof_input(side, daemon_nonce, host_nonce);
    ring::hmac::sign(&key, &msg).as_ref().to_vec()
}

/// Whether `given` is `side`'s proof of knowing `secret` for this pair of
/// nonces, in time that does not depend on where a wrong proof differs.
pub fn proof_matches(
    secret: &[u8],
    side: Side,
    daemon_nonce: &Nonce,
    host_nonce: &Nonce,
    given: &[u8],
) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let msg = proof_input(side, daemon_nonce, host_nonce);
    ring::hmac::verify(&key, &msg, given).is_ok()
}

/// The host's CHALLENGE: its nonce and its own proof of the secret.
#[derive(Debug, PartialEq)]
pub struct Challenge {
    pub nonce: Nonce,
    pub proof: Vec<u8>,
}

impl Challenge {
    /// A fresh challenge answering a daemon's `daemon_nonce`.
    pub fn new(secret: &[u8], daemon_nonce: &Nonce) -> io::Result<Challenge> {
        let nonce = new_nonce()?;
        let proof = proof(secret, Side::Host, daemon_nonce, &nonce);
        Ok(Challenge { nonce, proof })
    }

    pub fn encode(&self) -> Vec<u8> {
        [&self.nonce[..], &self.proof[..]].concat()
    }

    pub fn decode(frame: &Frame) -> io::Result<Challenge> {
        let b = &frame.body;
        if frame.kind != CHALLENGE || b.len() != 2 * PROOF_LEN {
            return Err(invalid("malformed challenge"));
        }
        Ok(Challenge {
            nonce: b[..PROOF_LEN].try_into().expect("a nonce"),
            proof: b[PROOF_LEN..].to_vec(),
        })
    }
}

/// A random-number stream: an L'Ecuyer-CMRG `.Random.seed` (kind code
/// and six state words).
pub type Stream = [i32; 7];

/// What WELCOME gives a daemon. A dispatcher gives each daemon its own
/// random-number stream; a host without one gives nothing. `serial` says
/// a SERIAL message (the profile's serialization configuration) follows.
#[derive(Debug, Default, PartialEq)]
pub struct Welcome {
    pub stream: Option<Stream>,
    pub serial: bool,
}

const HAS_STREAM: u8 = 1;
const HAS_SERIAL: u8 = 2;
const FLAGS: u8 = HAS_STREAM | HAS_SERIAL;

impl Welcome {
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = if self.stream.is_some() { HAS_STREAM } else { 0 };
        if self.serial {
            flags |= HAS_SERIAL;
        }
        let mut b = vec![flags];
        for word in self.stream.iter().flatten() {
            b.extend_from_slice(&word.to_le_bytes());
        }
        b
    }

    pub fn decode(frame: &Frame) -> io::Result<Welcome> {
        let b = &frame.body;
        if frame.kind != WELCOME || b.is_empty() || b[0] & !FLAGS != 0 {
            return Err(invalid("malformed welcome"));
        }
        let serial = b[0] & HAS_SERIAL != 0;
        if b[0] & HAS_STREAM == 0 {
            return match b.len() {
                1 => Ok(Welcome {
                    stream: None,
                    serial,
                }),
                _ => Err(invalid("malformed welcome")),
            };
        }
        if b.len() != 1 + 7 * 4 {
            return Err(invalid("malformed welcome"));
        }
        let mut stream = [0i32; 7];
        for (i, word) in b[1..].chunks_exact(4).enumerate() {
            stream[i] = i32::from_le_bytes(word.try_into().expect("4 bytes"));
        }
        Ok(Welcome {
            stream: Some(stream),
            serial,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::TASK;

    fn hello_frame(body: Vec<u8>) -> Frame {
        Frame { kind: HELLO, body }
    }

    #[test]
    fn proofs_need_the_secret_and_both_nonces() {
        let (d, h) = (new_nonce().unwrap(), new_nonce().unwrap());
        assert_ne!(d, h);
        for side in [Side::Host, Side::Daemon] {
            let p = proof(b"s3cret", side, &d, &h);
            assert_eq!(p.len(), PROOF_LEN);
            assert!(proof_matches(b"s3cret", side, &d, &h, &p));
            assert!(!proof_matches(b"s3creT", side, &d, &h, &p));
            assert!(!proof_matches(
                b"s3cret",
                side,
                &new_nonce().unwrap(),
                &h,
                &p
            ));
            assert!(!proof_matches(
                b"s3cret",
                side,
                &d,
                &new_nonce().unwrap(),
                &p
            ));
            // the nonces are not interchangeable either
            assert!(!proof_matches(b"s3cret", side, &h, &d, &p));
            assert!(!proof_matches(b"s3cret", side, &d, &h, &p[..31]));
            assert!(!proof_matches(b"s3cret", side, &d, &h, b""));
        }
    }

    #[test]
    fn a_proof_cannot_be_reflected_to_the_other_side() {
        let (d, h) = (new_nonce().unwrap(), new_nonce().unwrap());
        let host = proof(b"s3cret", Side::Host, &d, &h);
        let daemon = proof(b"s3cret", Side::Daemon, &d, &h);
        assert_ne!(host, daemon);
        assert!(!proof_matches(b"s3cret", Side::Daemon, &d, &h, &host));
        assert!(!proof_matches(b"s3cret", Side::Host, &d, &h, &daemon));
        // a daemon echoing the host's nonce as its own gains nothing
        let echoed = proof(b"s3cret", Side::Host, &h, &h);
        assert!(!proof_matches(b"s3cret", Side::Daemon, &h, &h, &echoed));
    }

    #[test]
    fn challenge_round_trips_and_rejects_garbage() {
        let d = new_nonce().unwrap();
        let c = Challenge::new(b"s3cret", &d).unwrap();
        assert!(proof_matches(b"s3cret", Side::Host, &d, &c.nonce, &c.proof));
        let f = Frame {
            kind: CHALLENGE,
            body: c.encode(),
        };
        assert_eq!(f.body.len(), 2 * PROOF_LEN);
        assert_eq!(Challenge::decode(&f).unwrap(), c);
        assert_ne!(Challenge::new(b"s3cret", &d).unwrap().nonce, c.nonce);
        for body in [vec![], vec![0; PROOF_LEN], vec![0; 2 * PROOF_LEN + 1]] {
            let f = Frame {
                kind: CHALLENGE,
                body,
            };
            assert!(Challenge::decode(&f).is_err());
        }
        let wrong_kind = Frame {
            kind: WELCOME,
            body: c.encode(),
        };
        assert!(Challenge::decode(&wrong_kind).is_err());
    }

    #[test]
    fn hello_is_checked_for_truncation_and_trailing_bytes() {
        let nonce = new_nonce().unwrap();
        let body = hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &nonce);
        let h = parse_hello(&hello_frame(body.clone())).unwrap();
        assert_eq!(h.package, PACKAGE_VERSION);
        assert_eq!(h.nonce, Some(nonce));
        let mut cut = body.clone();
        cut.truncate(MAGIC.len() + 4);
        assert!(parse_hello(&hello_frame(cut)).is_err());
        // a nonce cut short, or bytes after it
        let mut short = body.clone();
        short.pop();
        assert!(parse_hello(&hello_frame(short)).is_err());
        let mut long = body.clone();
        long.push(b'x');
        assert!(parse_hello(&hello_frame(long)).is_err());
        // an older daemon's HELLO, without a nonce, still parses
        let mut old = body;
        old.truncate(old.len() - PROOF_LEN);
        assert_eq!(parse_hello(&hello_frame(old)).unwrap().nonce, None);
    }

    #[test]
    fn hello_checks_magic_and_versions() {
        let n = [7u8; PROOF_LEN];
        let ok = hello_frame(hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &n));
        assert_eq!(check_hello(&parse_hello(&ok).unwrap()), Ok(()));
        let old = hello_frame(hello_body(PROTOCOL_VERSION + 1, "1.0.0", &n));
        let msg = check_hello(&parse_hello(&old).unwrap()).unwrap_err();
        assert!(msg.contains("version mismatch"), "{msg}");
        assert!(msg.contains("1.0.0"), "{msg}");
        assert!(parse_hello(&hello_frame(b"GET / HTTP/1.1".to_vec())).is_err());
        let wrong_kind = Frame {
            kind: TASK,
            body: hello_body(PROTOCOL_VERSION, PACKAGE_VERSION, &n),
        };
        assert!(parse_hello(&wrong_kind).is_err());
    }

    #[test]
    fn welcome_round_trips_and_rejects_garbage() {
        for w in [
            Welcome {
                stream: None,
                serial: false,
            },
            Welcome {
                stream: None,
                serial: true,
            },
            Welcome {
                stream: Some([10407, -1, 2, i32::MIN, i32::MAX, 5, 6]),
                serial: false,
            },
            Welcome {
                stream: Some([10407, -1, 2, i32::MIN, i32::MAX, 5, 6]),
                serial: true,
            },
        ] {
            let f = Frame {
                kind: WELCOME,
                body: w.encode(),
            };
            assert_eq!(Welcome::decode(&f).unwrap(), w);
        }
        for body in [
            vec![],
            vec![4],
            vec![1, 0, 0],
            vec![3, 0],
            vec![0, 0],
            vec![2, 0],
        ] {
            let f = Frame {
                kind: WELCOME,
                body,
            };
            assert!(Welcome::decode(&f).is_err());
        }
    }
}
