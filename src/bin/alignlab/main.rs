//! The `alignlab` command-line tool; its commands are the library's [`alignlab::cli`].

fn main() {
    alignlab::cli::main();
}
