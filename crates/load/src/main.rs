//! echoport-load: the load-testing tool. Everything lives in the library (`echoport_load`) so
//! it can be unit-tested; see docs/load.md.

fn main() -> std::process::ExitCode {
    echoport_load::main()
}
