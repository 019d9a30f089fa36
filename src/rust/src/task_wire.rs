//! Task numbers on the wire (R/nodeTraffic.R): every task the master sends a node carries the
//! node's next task number in an attribute of its tag, which the worker echoes back unread,
//! so that the results of a call that was abandoned are known when they arrive and dropped.
//! This runs for every task and every result, so it is done here rather than in R: there,
//! numbering a task and taking its number off the result cost ~55,000 instructions of R's
//! interpreter a round trip (a sixth of the master's work for a tiny task); here ~5,000.
//!
//! The R objects passed in are never changed: what changes is copied shallowly first (the
//! copy shares its elements), as R's own `x$tag <- value` would do.
//!
//! This module and lib.rs are the only ones that touch R objects. Nothing here may raise an R
//! error (a longjmp through Rust frames): types are checked before lengths are asked, and
//! only allocation, which fails only when R is out of memory, can. It uses R's C API directly,
//! every entry point it declares itself being in R's API, and its two per-message routines
//! are .Call entry points of their own (registered with extendr's, lib.rs): extendr's
//! wrappers register every argument and result in a hash table of protected objects, which
//! took more instructions than the work itself (~7,500 a call).

use extendr_api::SEXP;
use extendr_ffi::{
    R_NamesSymbol, R_NilValue, R_xlen_t, Rf_getAttrib, Rf_install, Rf_protect, Rf_setAttrib, Rf_unprotect,
    Rf_allocVector, SET_VECTOR_ELT, SEXPTYPE, STRING_ELT, TYPEOF, VECTOR_ELT, XLENGTH, INTEGER, LOGICAL, REAL, R_CHAR,
};
use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

// R's API, not (yet) declared by extendr_ffi. (SEXP points to an opaque struct, as in
// extendr_ffi's own declarations.)
#[allow(improper_ctypes)]
extern "C" {
    fn Rf_shallow_duplicate(x: SEXP) -> SEXP;
    fn Rf_ScalarInteger(x: std::os::raw::c_int) -> SEXP;
    fn Rf_mkString(x: *const std::os::raw::c_char) -> SEXP;
    fn Rf_GetOption1(tag: SEXP) -> SEXP;
    fn R_MakeExternalPtr(p: *mut std::ffi::c_void, tag: SEXP, prot: SEXP) -> SEXP;
    fn R_ExternalPtrAddr(s: SEXP) -> *mut std::ffi::c_void;
    fn R_ExternalPtrTag(s: SEXP) -> SEXP;
    fn R_ClearExternalPtr(s: SEXP);
    fn R_RegisterCFinalizerEx(s: SEXP, fun: extern "C" fn(SEXP), onexit: std::os::raw::c_int);
}

/// The task numbers of one node: the last sent, the last read, the first that is not stale,
/// and the count of abandoned sends and receives (of the session) when the last was sent.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TaskNumbers {
    pub sent: i32,
    pub read: i32,
    pub stale_below: i32,
    pub aborts: i32,
}

impl TaskNumbers {
    /// The number of the next task, sent when the session has abandoned `aborts` sends and
    /// receives: if one was abandoned since this node's last task, the results not read yet
    /// belong to a call that has ended.
    pub fn next(&mut self, aborts: i32) -> i32 {
        let seq = self.sent.saturating_add(1);
        if self.aborts != aborts {
            if self.read < self.sent {
                self.stale_below = seq;
            }
            self.aborts = aborts;
        }
        self.sent = seq;
        seq
    }

    /// The result of task `seq` arrived: whether it is for the current call (else it is stale).
    pub fn accept(&mut self, seq: i32) -> bool {
        if seq > self.read {
            self.read = seq;
        }
        seq >= self.stale_below
    }
}

/// New task numbers for a node: an external pointer that frees them when R collects it.
///
/// # Safety
/// On R's main thread.
pub unsafe fn new_numbers() -> SEXP {
    let numbers = Box::into_raw(Box::new(TaskNumbers::default()));
    // SAFETY: on R's main thread; the pointer is protected until the finalizer is set, and
    // the box is owned by the external pointer from here on (freed by free_numbers()).
    unsafe {
        let ptr = Rf_protect(R_MakeExternalPtr(numbers.cast(), numbers_tag(), R_NilValue));
        R_RegisterCFinalizerEx(ptr, free_numbers, 0);
        Rf_unprotect(1);
        ptr
    }
}

extern "C" fn free_numbers(ptr: SEXP) {
    // SAFETY: R calls this once for an external pointer made by new_numbers(); the address is
    // cleared, so no other use can see the freed box.
    unsafe {
        if let Some(numbers) = numbers_of(ptr) {
            R_ClearExternalPtr(ptr);
            drop(Box::from_raw(numbers as *mut TaskNumbers));
        }
    }
}

/// The task numbers an external pointer of new_numbers() holds; None for anything else.
///
/// # Safety
/// `ptr` must be a valid SEXP, on R's main thread; the reference must not outlive it.
pub unsafe fn numbers_of<'a>(ptr: SEXP) -> Option<&'a mut TaskNumbers> {
    // SAFETY: only external pointers tagged by new_numbers() are taken, whose address is a
    // live TaskNumbers (or NULL once freed).
    unsafe {
        if TYPEOF(ptr) != SEXPTYPE::EXTPTRSXP || R_ExternalPtrTag(ptr) != numbers_tag() {
            return None;
        }
        (R_ExternalPtrAddr(ptr) as *mut TaskNumbers).as_mut()
    }
}

unsafe fn numbers_tag() -> SEXP {
    // SAFETY: Rf_install() of a constant name, on R's main thread; symbols are never freed.
    unsafe { Rf_install(c"parallelly_task_numbers".as_ptr()) }
}

/// `.Call(wrap__rs_number_task, numbers, data, aborts, wire_ok, final_answer)`: `data` as it
/// goes to the node whose task numbers are `numbers` (see number_task()); NULL when R must
/// decide the wire names first (then call again, `final_answer` TRUE and `wire_ok` the
/// decision). Anything that is not as expected leaves `data` as it is.
pub extern "C" fn number_task_call(numbers: SEXP, data: SEXP, aborts: SEXP, wire_ok: SEXP, final_answer: SEXP) -> SEXP {
    // SAFETY: R passes valid SEXPs, on its main thread; nothing here panics, and were it to,
    // the unwind stops here (a panic must not cross into R).
    catch_unwind(AssertUnwindSafe(|| unsafe {
        let (Some(numbers), Some(aborts), Some(final_answer)) =
            (numbers_of(numbers), integer_scalar(aborts), logical_scalar(final_answer))
        else {
            return data;
        };
        let wire = wire_names(wire_ok, final_answer);
        number_task(numbers, data, aborts, wire).unwrap_or(R_NilValue)
    }))
    .unwrap_or(data)
}

/// `.Call(wrap__rs_accept_message, numbers, msg)`: a result read from a node (see
/// accept_message()); `numbers` NULL for a node without task numbers. NULL when it is stale.
pub extern "C" fn accept_message_call(numbers: SEXP, msg: SEXP) -> SEXP {
    // SAFETY: as in number_task_call().
    catch_unwind(AssertUnwindSafe(|| unsafe {
        accept_message(numbers_of(numbers), msg).unwrap_or(R_NilValue)
    }))
    .unwrap_or(msg)
}

/// Whether a task's function may travel as the name of base's eval() or lapply().
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireNames {
    Yes,
    No,
    /// Only R can tell (the check has not run, or the user's option may turn it off).
    AskR,
}

// base::eval and base::lapply (set once at load): tasks calling them carry their names.
static EVAL: AtomicUsize = AtomicUsize::new(0);
static LAPPLY: AtomicUsize = AtomicUsize::new(0);

/// Remember base's eval() and lapply() (they live as long as the session).
pub fn set_wire_functions(eval: SEXP, lapply: SEXP) {
    EVAL.store(eval as usize, Ordering::Relaxed);
    LAPPLY.store(lapply as usize, Ordering::Relaxed);
}

/// The wire names as the caller has them: `ok` is the check's result (TRUE, FALSE, or NULL
/// before it ran); `final_answer` says it already takes the user's option into account.
///
/// # Safety
/// `ok` must be a valid SEXP, on R's main thread.
unsafe fn wire_names(ok: SEXP, final_answer: bool) -> WireNames {
    // SAFETY: the caller passes valid SEXPs on R's main thread.
    unsafe {
        let ok = match logical_scalar(ok) {
            Some(ok) => ok,
            None => return WireNames::AskR,
        };
        if !final_answer {
            // The user's option (parallelly.internals.disable) may turn it off: R reads it.
            let option = Rf_GetOption1(Rf_install(c"parallelly.internals.disable".as_ptr()));
            if option != R_NilValue {
                return WireNames::AskR;
            }
        }
        if ok { WireNames::Yes } else { WireNames::No }
    }
}

/// `data` (a message list(type, data = list(fun, args, return, tag), tag)) as it goes on the
/// wire: an EXEC message's call numbered by `numbers` and, where `wire` allows, naming eval
/// or lapply instead of carrying it. Other messages, and tasks whose tag cannot carry an
/// attribute (an environment, a function), go as they are. None when R must decide the wire
/// names first (nothing was numbered then).
///
/// # Safety
/// `data` must be a valid SEXP, on R's main thread.
unsafe fn number_task(numbers: &mut TaskNumbers, data: SEXP, aborts: i32, wire: WireNames) -> Option<SEXP> {
    // SAFETY: valid SEXPs on R's main thread (the caller's promise); every new object is
    // protected until it is stored in a protected one, and unprotected before returning.
    unsafe {
        if !is_string(element(data, c"type"), c"EXEC") {
            return Some(data);
        }
        let Some(call_at) = position(data, c"data") else { return Some(data) };
        let call = VECTOR_ELT(data, call_at);
        if TYPEOF(call) != SEXPTYPE::VECSXP {
            return Some(data);
        }
        let Some(tag_at) = position(call, c"tag") else { return Some(data) };
        let tag = VECTOR_ELT(call, tag_at);
        let mark = match TYPEOF(tag) {
            SEXPTYPE::NILSXP => -1,
            SEXPTYPE::LGLSXP | SEXPTYPE::INTSXP | SEXPTYPE::REALSXP | SEXPTYPE::CPLXSXP | SEXPTYPE::STRSXP
            | SEXPTYPE::RAWSXP | SEXPTYPE::VECSXP | SEXPTYPE::LISTSXP => 1,
            _ => return Some(data),
        };
        let fun_at = position(call, c"fun");
        let name = fun_at.and_then(|at| wire_name(VECTOR_ELT(call, at)));
        if name.is_some() && wire == WireNames::AskR {
            return None;
        }
        let seq = numbers.next(aborts);
        // A NULL tag cannot carry an attribute: it becomes FALSE, numbered negative. A FALSE
        // of its own: Rf_ScalarLogical() returns R's one shared FALSE, not to be changed.
        let new_tag = Rf_protect(if mark < 0 { new_false() } else { Rf_shallow_duplicate(tag) });
        Rf_setAttrib(new_tag, seq_symbol(), Rf_ScalarInteger(mark * seq));
        let new_call = Rf_protect(Rf_shallow_duplicate(call));
        SET_VECTOR_ELT(new_call, tag_at, new_tag);
        if let (Some(at), Some(name), WireNames::Yes) = (fun_at, name, wire) {
            SET_VECTOR_ELT(new_call, at, Rf_mkString(name.as_ptr()));
        }
        let new_data = Rf_protect(Rf_shallow_duplicate(data));
        SET_VECTOR_ELT(new_data, call_at, new_call);
        Rf_unprotect(3);
        Some(new_data)
    }
}

/// A result `msg` (list(type, value, success, time, tag)) as the caller of the task expects
/// it: its tag as it was sent. Its number goes to `numbers` (when the node has them), and the
/// result is None when it answers a task of an abandoned call. A message without a number
/// (not the answer to a task numbered here) is returned as it is.
///
/// # Safety
/// `msg` must be a valid SEXP, on R's main thread.
unsafe fn accept_message(numbers: Option<&mut TaskNumbers>, msg: SEXP) -> Option<SEXP> {
    // SAFETY: as in number_task().
    unsafe {
        if TYPEOF(msg) != SEXPTYPE::VECSXP {
            return Some(msg);
        }
        let Some(tag_at) = position(msg, c"tag") else { return Some(msg) };
        let tag = VECTOR_ELT(msg, tag_at);
        let Some(number) = integer_scalar(Rf_getAttrib(tag, seq_symbol())) else { return Some(msg) };
        let seq = number.saturating_abs();
        let new_msg = Rf_protect(Rf_shallow_duplicate(msg));
        if number < 0 {
            SET_VECTOR_ELT(new_msg, tag_at, R_NilValue);
        } else {
            let new_tag = Rf_protect(Rf_shallow_duplicate(tag));
            Rf_setAttrib(new_tag, seq_symbol(), R_NilValue);
            SET_VECTOR_ELT(new_msg, tag_at, new_tag);
            Rf_unprotect(1);
        }
        Rf_unprotect(1);
        let current = numbers.map_or(true, |numbers| numbers.accept(seq));
        current.then_some(new_msg)
    }
}

/// "eval" or "lapply" when `fun` is base's eval() or lapply() itself.
fn wire_name(fun: SEXP) -> Option<&'static CStr> {
    let fun = fun as usize;
    if fun != 0 && fun == EVAL.load(Ordering::Relaxed) {
        Some(c"eval")
    } else if fun != 0 && fun == LAPPLY.load(Ordering::Relaxed) {
        Some(c"lapply")
    } else {
        None
    }
}

/// A new logical vector FALSE (R's own scalars TRUE and FALSE are shared constants).
unsafe fn new_false() -> SEXP {
    // SAFETY: on R's main thread; the vector has length one, so its first element exists.
    unsafe {
        let x = Rf_allocVector(SEXPTYPE::LGLSXP, 1);
        *LOGICAL(x) = 0;
        x
    }
}

/// The symbol of the tag attribute that carries the number.
unsafe fn seq_symbol() -> SEXP {
    // SAFETY: Rf_install() of a constant name, on R's main thread; symbols are never freed.
    unsafe { Rf_install(c"parallellySeq".as_ptr()) }
}

/// The index of the first element of list `x` named `name`.
unsafe fn position(x: SEXP, name: &CStr) -> Option<R_xlen_t> {
    // SAFETY: valid SEXPs on R's main thread (the callers' promise); names are a character
    // vector as long as the list, or NULL.
    unsafe {
        if TYPEOF(x) != SEXPTYPE::VECSXP {
            return None;
        }
        let names = Rf_getAttrib(x, R_NamesSymbol);
        if TYPEOF(names) != SEXPTYPE::STRSXP {
            return None;
        }
        let n = XLENGTH(names).min(XLENGTH(x));
        (0..n).find(|&i| CStr::from_ptr(R_CHAR(STRING_ELT(names, i))) == name)
    }
}

/// Element `name` of list `x`, or R's NULL.
unsafe fn element(x: SEXP, name: &CStr) -> SEXP {
    // SAFETY: as in position().
    unsafe { position(x, name).map_or(R_NilValue, |at| VECTOR_ELT(x, at)) }
}

/// Whether `x` is the one string `value`.
unsafe fn is_string(x: SEXP, value: &CStr) -> bool {
    // SAFETY: valid SEXP on R's main thread; a character vector's elements are CHARSXPs.
    unsafe { TYPEOF(x) == SEXPTYPE::STRSXP && XLENGTH(x) == 1 && CStr::from_ptr(R_CHAR(STRING_ELT(x, 0))) == value }
}

/// An integer (or whole double) of length one, not NA.
unsafe fn integer_scalar(x: SEXP) -> Option<i32> {
    // SAFETY: valid SEXP on R's main thread; XLENGTH() only of a vector (R >= 4.5 raises an
    // error for anything else, which must not unwind through Rust), and the data read
    // within its length.
    unsafe {
        match TYPEOF(x) {
            SEXPTYPE::INTSXP | SEXPTYPE::REALSXP if XLENGTH(x) != 1 => None,
            SEXPTYPE::INTSXP => Some(*INTEGER(x)).filter(|&v| v != i32::MIN),
            SEXPTYPE::REALSXP => {
                let v = *REAL(x);
                (v.is_finite() && v.fract() == 0.0 && v.abs() < i32::MAX as f64).then_some(v as i32)
            }
            _ => None,
        }
    }
}

/// TRUE or FALSE of length one.
unsafe fn logical_scalar(x: SEXP) -> Option<bool> {
    // SAFETY: valid SEXP on R's main thread; read within its length.
    unsafe {
        if TYPEOF(x) != SEXPTYPE::LGLSXP || XLENGTH(x) != 1 {
            return None;
        }
        match *LOGICAL(x) {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_tasks_in_order() {
        let mut n = TaskNumbers::default();
        assert_eq!((n.next(0), n.next(0), n.next(0)), (1, 2, 3));
        assert!(n.accept(1) && n.accept(2) && n.accept(3));
        assert_eq!(n.read, 3);
    }

    #[test]
    fn results_of_an_abandoned_call_are_stale() {
        let mut n = TaskNumbers::default();
        n.next(0);
        n.next(0);
        assert!(n.accept(1));
        // A send or receive was abandoned (aborts 0 -> 1) with task 2 unread: task 3 starts a
        // new call, and the late result of task 2 is stale.
        assert_eq!(n.next(1), 3);
        assert_eq!(n.stale_below, 3);
        assert!(!n.accept(2));
        assert!(n.accept(3));
        // Another abort with nothing unread marks nothing stale.
        assert_eq!(n.next(2), 4);
        assert_eq!(n.stale_below, 3);
        assert!(n.accept(4));
    }

    #[test]
    fn pipelined_tasks_are_not_stale() {
        // Several tasks sent before their results are read, without an abort: all current.
        let mut n = TaskNumbers::default();
        for _ in 0..5 {
            n.next(7);
        }
        assert!((1..=5).all(|s| n.accept(s)));
    }
}
