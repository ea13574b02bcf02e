//! `vmail-lda`: see the library. Links no database code (start-up cost per message): when
//! lookupd cannot answer it execs `vmail-lda-direct`.

fn main() {
    std::process::exit(vmail_lda::main(std::env::args_os(), vmail_lda::exec_direct));
}
