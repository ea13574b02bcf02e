//! `vmail-lda`: see the library.

fn main() {
    std::process::exit(vmail_lda::main(std::env::args_os()));
}
