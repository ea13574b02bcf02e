//! `vmail-lda-direct`: vmail-lda that also reads the directory itself (see the library);
//! `vmail-lda` execs it when lookupd cannot answer.

fn main() {
    std::process::exit(vmail_lda::main(
        std::env::args_os(),
        vmail_lda_direct::from_directory,
    ));
}
