//! `vmail-lda`: see the library. Links no database code (start-up cost per message): when
//! lookupd cannot answer it execs `vmail-lda-direct`.
//!
//! No Rust `main`: std's start-up installs a stack-overflow guard, which reads
//! `/proc/self/maps` and maps an alternate signal stack — about 0.2 ms of every delivery on a
//! small VM, where Postfix starts one process per message. [`vmail_lda::process_setup`] does
//! the parts of std's start-up that matter here.
#![no_main]

#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    vmail_lda::process_setup();
    // process::exit, not a return: it flushes Rust's stdout first.
    std::process::exit(vmail_lda::main(std::env::args_os(), vmail_lda::exec_direct));
}
