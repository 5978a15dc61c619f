//! Large plain vectors among a task's objects travel without serialization,
//! as results do (see `rvec`): the host sends their data straight from R's
//! memory after the serialized rest of the task, and the daemon reads it
//! straight into freshly allocated R vectors. A 100 MB argument thus costs
//! no serialize or unserialize copy on either side.
//!
//! A task is `list(expr, globals, args, seed)` (see `.make_task()` in R);
//! the vectors taken out are elements of `globals` or `args`, replaced by
//! NULL in the copy that is serialized, and put back by the daemon.

use crate::protocol::RAW_ARG_HEADER_LEN;
use extendr_ffi::{
    R_NilValue, Rf_protect, Rf_unprotect, Rf_xlength, SET_VECTOR_ELT, SEXP, SEXPTYPE, TYPEOF,
    VECTOR_ELT,
};

/// Vectors smaller than this are serialized with the rest.
pub const RAW_ARG_MIN: usize = 4 << 20;

/// Where a raw vector sits in the task, and what it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawArg {
    pub list: u8,
    pub index: u32,
    pub rtype: u8,
    pub n: u64,
}

impl RawArg {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.list);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.push(self.rtype);
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(&self.n.to_le_bytes());
    }

    /// Decode one header; `None` if it does not describe a vector this
    /// package sends (a malformed frame).
    pub fn decode(b: &[u8]) -> Option<(RawArg, usize)> {
        if b.len() != RAW_ARG_HEADER_LEN || !(1..=2).contains(&b[0]) {
            return None;
        }
        let arg = RawArg {
            list: b[0],
            index: u32::from_le_bytes(b[4..8].try_into().unwrap()),
            rtype: b[8],
            n: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        };
        let bytes = crate::rvec::element_size(arg.rtype)?.checked_mul(arg.n as usize)?;
        Some((arg, bytes))
    }
}

fn is_list(x: SEXP) -> bool {
    unsafe { TYPEOF(x) == SEXPTYPE::VECSXP }
}

/// The large plain vectors of `task` and their data (valid while `task`
/// is protected and unmodified).
pub fn find<'a>(task: SEXP) -> Vec<(RawArg, &'a [u8])> {
    let mut found = Vec::new();
    unsafe {
        if !is_list(task) || Rf_xlength(task) != 4 {
            return found;
        }
        for list in 1..=2u8 {
            let l = VECTOR_ELT(task, list as isize);
            if !is_list(l) {
                continue;
            }
            for i in 0..Rf_xlength(l) {
                if let Some((t, n, data)) = crate::rvec::plain_vector(VECTOR_ELT(l, i), RAW_ARG_MIN)
                {
                    let arg = RawArg {
                        list,
                        index: i as u32,
                        rtype: t,
                        n: n as u64,
                    };
                    found.push((arg, data));
                }
            }
        }
    }
    found
}

/// A copy of `task` with the vectors of `args` replaced by NULL, sharing
/// everything else. Unprotected: protect before the next allocation.
pub fn without(task: SEXP, args: &[(RawArg, &[u8])]) -> SEXP {
    unsafe {
        let copy = Rf_protect(crate::rapi::Rf_shallow_duplicate(task));
        for list in 1..=2u8 {
            if !args.iter().any(|(a, _)| a.list == list) {
                continue;
            }
            let l = Rf_protect(crate::rapi::Rf_shallow_duplicate(VECTOR_ELT(
                task,
                list as isize,
            )));
            for (a, _) in args.iter().filter(|(a, _)| a.list == list) {
                SET_VECTOR_ELT(l, a.index as isize, R_NilValue);
            }
            SET_VECTOR_ELT(copy, list as isize, l);
            Rf_unprotect(1);
        }
        Rf_unprotect(1);
        copy
    }
}

/// Memory for the data of `arg`'s vector, to fill and then make the vector
/// with [`into_vector`] (see `rvec::RBuffer`: no copy, no page faults
/// taken one at a time). `None` if memory is short.
pub fn buffer(arg: &RawArg) -> Option<crate::rvec::RBuffer> {
    let size = crate::rvec::element_size(arg.rtype)?;
    crate::rvec::RBuffer::new(size.checked_mul(arg.n as usize)?)
}

/// The R vector of `arg` from its filled buffer (unprotected).
pub fn into_vector(arg: &RawArg, buf: crate::rvec::RBuffer) -> Option<SEXP> {
    buf.into_r_vector(arg.rtype)
}

/// Put a filled vector back in its place in the rebuilt task; false if the
/// task has no such place.
pub fn put_back(task: SEXP, arg: &RawArg, v: SEXP) -> bool {
    unsafe {
        if !is_list(task) || Rf_xlength(task) != 4 {
            return false;
        }
        let l = VECTOR_ELT(task, arg.list as isize);
        if !is_list(l) || arg.index as isize >= Rf_xlength(l) {
            return false;
        }
        SET_VECTOR_ELT(l, arg.index as isize, v);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reject_garbage() {
        let a = RawArg {
            list: 2,
            index: 7,
            rtype: SEXPTYPE::REALSXP as u8,
            n: 1000,
        };
        let mut b = Vec::new();
        a.encode(&mut b);
        assert_eq!(b.len(), RAW_ARG_HEADER_LEN);
        assert_eq!(RawArg::decode(&b), Some((a, 8000)));
        let mut bad = b.clone();
        bad[0] = 3;
        assert_eq!(RawArg::decode(&bad), None);
        let mut bad = b.clone();
        bad[8] = SEXPTYPE::STRSXP as u8;
        assert_eq!(RawArg::decode(&bad), None);
        let mut huge = b;
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(RawArg::decode(&huge), None);
    }
}
