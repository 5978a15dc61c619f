//! Large plain vectors among a task's objects travel without serialization,
//! as results do (see `vectors`): the host sends their data straight from
//! R's memory after the serialized rest of the task, and the daemon reads
//! it straight into freshly allocated R vectors. A 100 MB argument thus
//! costs no serialize or unserialize copy on either side.
//!
//! A task payload is a list (see `mirai()` in R): its elements, and the
//! elements of lists among them (the task's globals), are searched. The
//! vectors found are replaced by NULL in the copy that is serialized and
//! put back by the daemon, at the position each [`RawArg`] records.

use super::api::{Rf_shallow_duplicate, ALTREP};
use super::vectors::plain_vector;
use crate::buffer::VectorBuffer;
use crate::protocol::RawArg;
use extendr_ffi::{
    R_NilValue, Rf_protect, Rf_unprotect, Rf_xlength, SET_VECTOR_ELT, SEXP, SEXPTYPE, TYPEOF,
    VECTOR_ELT,
};

/// Vectors smaller than this are serialized with the rest.
pub const RAW_ARG_MIN: usize = 4 << 20;

/// `index` of a RawArg that is a top-level element itself.
const TOP: u32 = u32::MAX;

fn is_plain_list(x: SEXP) -> bool {
    // SAFETY: R's thread; `x` is a protected R object.
    unsafe { TYPEOF(x) == SEXPTYPE::VECSXP && ALTREP(x) == 0 }
}

/// The large plain vectors of `task` and their data (valid while `task`
/// is protected and unmodified).
pub fn find<'a>(task: SEXP) -> Vec<(RawArg, &'a [u8])> {
    let mut found = Vec::new();
    if !is_plain_list(task) {
        return found;
    }
    let mut take = |x: SEXP, slot: usize, index: u32| {
        if let Some((vtype, n, data)) = plain_vector(x, RAW_ARG_MIN) {
            let arg = RawArg {
                slot: slot as u32,
                index,
                vtype,
                n,
            };
            found.push((arg, data));
        }
    };
    // SAFETY: R's thread; elements of a protected list are protected.
    unsafe {
        for i in 0..Rf_xlength(task) as usize {
            let x = VECTOR_ELT(task, i as isize);
            if is_plain_list(x) {
                for j in 0..Rf_xlength(x) as usize {
                    take(VECTOR_ELT(x, j as isize), i, j as u32);
                }
            } else {
                take(x, i, TOP);
            }
        }
    }
    found
}

/// A copy of `task` with the vectors of `args` replaced by NULL, sharing
/// everything else. Unprotected: protect before the next allocation.
pub fn without(task: SEXP, args: &[(RawArg, &[u8])]) -> SEXP {
    // SAFETY: R's thread; every object made is protected until placed.
    unsafe {
        let copy = Rf_protect(Rf_shallow_duplicate(task));
        let mut slots: Vec<u32> = args.iter().map(|(a, _)| a.slot).collect();
        slots.dedup();
        for slot in slots {
            let nested = args
                .iter()
                .filter(|(a, _)| a.slot == slot && a.index != TOP);
            let mut inner = None;
            for (a, _) in nested {
                let l = *inner.get_or_insert_with(|| {
                    let l = Rf_protect(Rf_shallow_duplicate(VECTOR_ELT(task, slot as isize)));
                    SET_VECTOR_ELT(copy, slot as isize, l);
                    Rf_unprotect(1);
                    l
                });
                SET_VECTOR_ELT(l, a.index as isize, R_NilValue);
            }
            if args.iter().any(|(a, _)| a.slot == slot && a.index == TOP) {
                SET_VECTOR_ELT(copy, slot as isize, R_NilValue);
            }
        }
        Rf_unprotect(1);
        copy
    }
}

/// Memory for the data of `arg`'s vector, to fill and then make the vector
/// with `vectors::into_r_vector`. `None` if memory is short.
pub fn buffer(arg: &RawArg) -> Option<VectorBuffer> {
    VectorBuffer::new(arg.data_len()?, arg.n)
}

/// Put a filled vector back in its place in the rebuilt task; false if the
/// task has no such place.
pub fn put_back(task: SEXP, arg: &RawArg, v: SEXP) -> bool {
    // SAFETY: R's thread; positions are checked against the lengths.
    unsafe {
        if !is_plain_list(task) || arg.slot as isize >= Rf_xlength(task) {
            return false;
        }
        if arg.index == TOP {
            SET_VECTOR_ELT(task, arg.slot as isize, v);
            return true;
        }
        let l = VECTOR_ELT(task, arg.slot as isize);
        if !is_plain_list(l) || arg.index as isize >= Rf_xlength(l) {
            return false;
        }
        SET_VECTOR_ELT(l, arg.index as isize, v);
        true
    }
}
