//! echoport-load: the load-testing tool. Everything lives in the library (`echoport::load`) so
//! it can be unit-tested; see docs/load.md.

fn main() -> std::process::ExitCode {
    echoport::load::main()
}
