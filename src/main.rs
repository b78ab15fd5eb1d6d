use echoport::config::{self, Invocation};
use std::process::ExitCode;

fn main() -> ExitCode {
    match config::invocation() {
        Ok(Invocation::Serve(config)) => {
            echoport::server::init_logging(&config);
            match echoport::server::run(*config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, 2),
            }
        }
        Ok(Invocation::Check(args)) => match echoport::check::run(&args) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, 1),
        },
        Err(e) => fail(&e, 2),
    }
}

fn fail(e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
