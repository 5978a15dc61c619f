//! The dispatcher's memory budget: bytes of task frames waiting in its
//! queue, against an optional limit (`daemons(memory = )`). Tasks handed
//! straight to a free daemon never count.

#[derive(Default)]
pub struct Budget {
    pub limit: Option<u64>,
    pub used: u64,
    /// The largest `used` seen.
    pub peak: u64,
}

impl Budget {
    pub fn add(&mut self, n: usize) {
        self.used += n as u64;
        self.peak = self.peak.max(self.used);
    }

    pub fn release(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n as u64);
    }

    /// Whether more may be queued now: while the bytes waiting are at or
    /// above the limit, submissions wait (one may take the queue above it).
    pub fn has_room(&self) -> bool {
        self.limit.is_none_or(|limit| self.used < limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_until_the_limit_is_reached() {
        let mut b = Budget {
            limit: Some(100),
            ..Budget::default()
        };
        assert!(b.has_room());
        b.add(99);
        assert!(b.has_room());
        b.add(50);
        assert!(!b.has_room());
        assert_eq!(b.peak, 149);
        b.release(49);
        assert!(!b.has_room());
        b.release(1);
        assert!(b.has_room());
        assert_eq!(b.peak, 149);
        assert!(Budget::default().has_room());
    }
}
