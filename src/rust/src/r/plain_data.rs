//! Whether a serialized R object is plain data: vectors, lists, strings,
//! symbols, calls and their attributes, and nothing that makes R run code
//! or look things up while rebuilding it (environments, namespaces,
//! closures, external pointers, byte code, ALTREP classes, serialization
//! hooks, S4 objects).
//!
//! Rebuilding plain data cannot fail but for memory, so the host reads
//! such results without the handlers of `unwind::protect` (which cost more
//! than a small result's round trip). Anything else, or anything this walk
//! does not understand, takes the protected path.
//!
//! The walk follows R's serialization format (native binary, version 3):
//! a header, then items, each a flags word (type, object bit, attribute
//! and tag bits) followed by its contents.

/// Serialized items above this size are not walked: the protected path
/// costs them nothing in proportion.
pub const WALK_LIMIT: usize = 64 * 1024;

/// Nesting deeper than this is left to the protected path.
const MAX_DEPTH: u32 = 64;

const NILVALUE_SXP: u32 = 254;
const REFSXP: u32 = 255;
const SYMSXP: u32 = 1;
const LISTSXP: u32 = 2;
const LANGSXP: u32 = 6;
const CHARSXP: u32 = 9;
const LGLSXP: u32 = 10;
const INTSXP: u32 = 13;
const REALSXP: u32 = 14;
const CPLXSXP: u32 = 15;
const STRSXP: u32 = 16;
const VECSXP: u32 = 19;
const EXPRSXP: u32 = 20;
const RAWSXP: u32 = 24;

const HAS_ATTR: u32 = 1 << 9;
const HAS_TAG: u32 = 1 << 10;

struct Walk<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Items R adds to its reference table (symbols, here).
    refs: usize,
}

impl Walk<'_> {
    fn int(&mut self) -> Option<i32> {
        let b = self.bytes.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(i32::from_ne_bytes(b.try_into().ok()?))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.pos = end)
    }

    /// A vector length: an int, or -1 and a 64-bit length in two ints.
    fn length(&mut self) -> Option<usize> {
        match self.int()? {
            -1 => {
                let hi = self.int()? as u32 as u64;
                let lo = self.int()? as u32 as u64;
                usize::try_from((hi << 32) | lo).ok()
            }
            n if n >= 0 => Some(n as usize),
            _ => None,
        }
    }

    fn item(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        let flags = self.int()? as u32;
        let kind = flags & 0xff;
        match kind {
            NILVALUE_SXP => Some(()),
            REFSXP => {
                let index = match flags >> 8 {
                    0 => self.int()? as usize,
                    i => i as usize,
                };
                (index >= 1 && index <= self.refs).then_some(())
            }
            SYMSXP => {
                self.item(depth + 1)?;
                self.refs += 1;
                Some(())
            }
            LISTSXP | LANGSXP => {
                if flags & HAS_ATTR != 0 {
                    self.item(depth + 1)?;
                }
                if flags & HAS_TAG != 0 {
                    self.item(depth + 1)?;
                }
                self.item(depth + 1)?; // CAR
                self.item(depth + 1) // CDR
            }
            CHARSXP => match self.int()? {
                -1 => Some(()),
                n if n >= 0 => self.skip(n as usize),
                _ => None,
            },
            LGLSXP | INTSXP | REALSXP | CPLXSXP | RAWSXP => {
                let size = match kind {
                    REALSXP => 8,
                    CPLXSXP => 16,
                    RAWSXP => 1,
                    _ => 4,
                };
                let n = self.length()?;
                self.skip(n.checked_mul(size)?)?;
                self.attributes(flags, depth)
            }
            STRSXP | VECSXP | EXPRSXP => {
                let n = self.length()?;
                // every element takes at least 4 bytes: refuse lengths the
                // data cannot hold before looping over them
                if n > self.bytes.len().saturating_sub(self.pos) / 4 {
                    return None;
                }
                for _ in 0..n {
                    self.item(depth + 1)?;
                }
                self.attributes(flags, depth)
            }
            _ => None,
        }
    }

    fn attributes(&mut self, flags: u32, depth: u32) -> Option<()> {
        if flags & HAS_ATTR != 0 {
            self.item(depth + 1)?;
        }
        Some(())
    }

    /// The header: format, versions, and (version 3) the native encoding.
    fn header(&mut self) -> Option<()> {
        if self.bytes.get(..2)? != b"B\n" {
            return None;
        }
        self.pos = 2;
        let version = self.int()?;
        self.skip(8)?; // the writer's R version, the minimal reader's
        match version {
            2 => Some(()),
            3 => {
                let n = self.int()?;
                self.skip(usize::try_from(n).ok()?)
            }
            _ => None,
        }
    }
}

/// Whether `bytes` (R's native binary serialization) is one plain-data
/// object, all of it (see the module docs).
pub fn is_plain_data(bytes: &[u8]) -> bool {
    if bytes.len() > WALK_LIMIT {
        return false;
    }
    let mut w = Walk {
        bytes,
        pos: 0,
        refs: 0,
    };
    w.header().is_some() && w.item(0).is_some() && w.pos == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::is_plain_data;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Made by R 4.2: `serialize(x, NULL, xdr = FALSE, version = 3)`.
    const PLAIN: [(&str, &str); 4] = [
        (
            "list(a = 1L, b = \"x\", c = NULL, d = c(1.5, NA), e = TRUE, f = as.raw(1:3), g = 2i)",
            concat!(
                "420a030000000202040000050300050000005554462d3813020000070000000d0000000100000001",
                "0000001000000001000000090004000100000078fe0000000e00000002000000000000000000f83f",
                "a20700000000f07f0a000000010000000100000018000000030000000102030f0000000100000000",
                "000000000000000000000000000040020400000100000009000400050000006e616d657310000000",
                "07000000090004000100000061090004000100000062090004000100000063090004000100000064",
                "090004000100000065090004000100000066090004000100000067fe000000",
            ),
        ),
        (
            "data.frame(x = 1:2 + 0L, y = c(\"a\", \"b\"))",
            concat!(
                "420a030000000202040000050300050000005554462d3813030000020000000d0000000200000001",
                "00000002000000100000000200000009000400010000006109000400010000006202040000010000",
                "0009000400050000006e616d65731000000002000000090004000100000078090004000100000079",
                "02040000010000000900040005000000636c6173731000000001000000090004000a000000646174",
                "612e6672616d6502040000010000000900040009000000726f772e6e616d65730d00000002000000",
                "00000080fefffffffe000000",
            ),
        ),
        (
            "quote(f(x, y = 1))",
            concat!(
                "420a030000000202040000050300050000005554462d380600000001000000090004000100000066",
                "020000000100000009000400010000007802040000010000000900040001000000790e0000000100",
                "0000000000000000f03ffe000000",
            ),
        ),
        (
            "factor(c(\"u\", \"v\", \"u\"))",
            concat!(
                "420a030000000202040000050300050000005554462d380d03000003000000010000000200000001",
                "000000020400000100000009000400060000006c6576656c73100000000200000009000400010000",
                "007509000400010000007602040000010000000900040005000000636c6173731000000001000000",
                "0900040006000000666163746f72fe000000",
            ),
        ),
    ];

    const NOT_PLAIN: [(&str, &str); 3] = [
        (
            "new.env()",
            concat!(
                "420a030000000202040000050300050000005554462d380400000000000000fd000000fe00000013",
                "0000001d000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe",
                "000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe",
                "000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe000000fe",
                "000000fe000000",
            ),
        ),
        (
            "function(x) x",
            concat!(
                "420a030000000202040000050300050000005554462d3803040000fd000000020400000100000009",
                "0004000100000078fb000000fe000000ff010000",
            ),
        ),
        (
            "1:10 (compact ALTREP)",
            concat!(
                "420a030000000202040000050300050000005554462d38ee0000000200000001000000090004000e",
                "000000636f6d706163745f696e747365710200000001000000090004000400000062617365020000",
                "000d000000010000000d000000fe0000000e000000030000000000000000002440000000000000f0",
                "3f000000000000f03ffe000000",
            ),
        ),
    ];

    #[test]
    fn plain_data_is_recognised() {
        for (what, bytes) in PLAIN {
            assert!(is_plain_data(&hex(bytes)), "{what}");
        }
    }

    #[test]
    fn anything_else_is_not() {
        for (what, bytes) in NOT_PLAIN {
            assert!(!is_plain_data(&hex(bytes)), "{what}");
        }
    }

    #[test]
    fn truncated_or_padded_bytes_are_not() {
        for (_, bytes) in PLAIN {
            let b = hex(bytes);
            for cut in [1, 4, b.len() / 2, b.len() - 1] {
                assert!(!is_plain_data(&b[..cut]));
            }
            let mut long = b.clone();
            long.push(0);
            assert!(!is_plain_data(&long));
        }
        assert!(!is_plain_data(b""));
        assert!(!is_plain_data(b"X\n\0\0\0\x03"));
    }
}
