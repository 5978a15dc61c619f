//! The opening of a connection. The daemon sends HELLO (magic, protocol
//! version, package version). A host with a secret then sends CHALLENGE,
//! 32 random bytes, and the daemon answers PROOF, an HMAC-SHA256 of them
//! keyed with the secret: the secret never crosses the network, and a
//! recorded proof is worthless for the next challenge. A wrong proof is
//! dropped without a word. Finally the host answers WELCOME, carrying the
//! daemon's set-up, or REJECT with a reason, and closes. A WELCOME may
//! announce that a SERIAL message (the profile's serialization
//! configuration) follows it, before anything else.

use super::frame::{invalid, Frame};
use super::message::{HELLO, WELCOME};
use std::io;

pub const MAGIC: &[u8; 6] = b"MIRAI\x00";
/// Bumped whenever the framing or message layout changes.
pub const PROTOCOL_VERSION: u16 = 5;
pub const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bytes in a challenge and in a proof.
pub const PROOF_LEN: usize = 32;

/// The daemon's opening message: magic, protocol version and package
/// version (length-prefixed).
pub fn hello_body(protocol: u16, package: &str) -> Vec<u8> {
    let package = &package.as_bytes()[..package.len().min(255)];
    let mut b = Vec::with_capacity(MAGIC.len() + 3 + package.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&protocol.to_le_bytes());
    b.push(package.len() as u8);
    b.extend_from_slice(package);
    b
}

/// What a HELLO says, if it is one of ours at all.
#[derive(Debug, PartialEq)]
pub struct Hello {
    pub protocol: u16,
    pub package: String,
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
    if rest.len() != n {
        return Err(invalid("malformed handshake"));
    }
    let package = std::str::from_utf8(rest)
        .map_err(|_| invalid("package version is not UTF-8"))?
        .to_string();
    Ok(Hello { protocol, package })
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

/// A fresh challenge.
pub fn new_challenge() -> io::Result<[u8; PROOF_LEN]> {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; PROOF_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| io::Error::other("no system randomness"))?;
    Ok(nonce)
}

/// The proof of knowing `secret` for `challenge`.
pub fn proof(secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, challenge).as_ref().to_vec()
}

/// Whether `given` proves knowledge of `secret` for `challenge`, in time
/// that does not depend on where a wrong proof differs.
pub fn proof_matches(secret: &[u8], challenge: &[u8], given: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, challenge, given).is_ok()
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
    fn proofs_need_the_secret_and_the_challenge() {
        let c = new_challenge().unwrap();
        assert_ne!(c, new_challenge().unwrap());
        let p = proof(b"s3cret", &c);
        assert_eq!(p.len(), PROOF_LEN);
        assert!(proof_matches(b"s3cret", &c, &p));
        assert!(!proof_matches(b"s3creT", &c, &p));
        assert!(!proof_matches(b"s3cret", &new_challenge().unwrap(), &p));
        assert!(!proof_matches(b"s3cret", &c, &p[..31]));
        assert!(!proof_matches(b"s3cret", &c, b""));
    }

    #[test]
    fn hello_is_checked_for_truncation_and_trailing_bytes() {
        let body = hello_body(PROTOCOL_VERSION, PACKAGE_VERSION);
        let h = parse_hello(&hello_frame(body.clone())).unwrap();
        assert_eq!(h.package, PACKAGE_VERSION);
        let mut cut = body.clone();
        cut.truncate(MAGIC.len() + 4);
        assert!(parse_hello(&hello_frame(cut)).is_err());
        let mut long = body;
        long.push(b'x');
        assert!(parse_hello(&hello_frame(long)).is_err());
    }

    #[test]
    fn hello_checks_magic_and_versions() {
        let ok = hello_frame(hello_body(PROTOCOL_VERSION, PACKAGE_VERSION));
        assert_eq!(check_hello(&parse_hello(&ok).unwrap()), Ok(()));
        let old = hello_frame(hello_body(PROTOCOL_VERSION + 1, "1.0.0"));
        let msg = check_hello(&parse_hello(&old).unwrap()).unwrap_err();
        assert!(msg.contains("version mismatch"), "{msg}");
        assert!(msg.contains("1.0.0"), "{msg}");
        assert!(parse_hello(&hello_frame(b"GET / HTTP/1.1".to_vec())).is_err());
        let wrong_kind = Frame {
            kind: TASK,
            body: hello_body(PROTOCOL_VERSION, PACKAGE_VERSION),
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
