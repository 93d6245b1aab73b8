//! The `chaingate` binary; the command line lives in the library so that tests and the demo
//! share one definition of it.

fn main() -> std::process::ExitCode {
    chaingate::main()
}
