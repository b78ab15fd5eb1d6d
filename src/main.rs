use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match echoport::config::load() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    echoport::server::init_logging(&config);
    match echoport::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
