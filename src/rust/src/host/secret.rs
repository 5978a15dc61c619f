//! The secret a profile's daemons must prove they know (see the
//! handshake in `protocol`).

/// A fresh random secret, as the hex text launch commands carry.
pub fn new_secret() -> std::io::Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
