//! Chat mode with a real IRC client library: the `irc` package from PyPI (jaraco/irc), driven by
//! tests/python/test_irc_client.py. The package is installed into a virtualenv at target/pyenv
//! (created on first use and reused afterwards; installing needs PyPI to be reachable). Python 3
//! with the venv module must be installed (scripts/test.sh installs python3-venv as root).
//!
//! Every step is bounded: the install, the script (which bounds each of its own waits), the server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use common::{Server, run_bounded};

/// The `irc` release the test is written against.
const IRC_VERSION: &str = "20.5.0";
/// Creating the venv and installing from PyPI.
const INSTALL_BOUND: Duration = Duration::from_secs(300);
/// The script's own waits are 20 s each; the whole conversation takes well under a second.
const SCRIPT_BOUND: Duration = Duration::from_secs(120);

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf()
}

/// Exit status (`None`: killed at its bound) and everything it printed.
fn run(cmd: Command, bound: Duration) -> (Option<ExitStatus>, String) {
    let ran = run_bounded(cmd, bound);
    (ran.status, format!("{}{}", ran.stdout, ran.stderr))
}

/// target/pyenv with `irc==IRC_VERSION` installed; created or repaired when needed.
fn pyenv_python() -> PathBuf {
    let venv = target_dir().join("pyenv");
    let python = venv.join("bin").join("python");
    let check = format!("import importlib.metadata as m, irc.client; assert m.version('irc') == '{IRC_VERSION}'");
    let has_irc = || {
        if !python.is_file() {
            return false;
        }
        let mut cmd = Command::new(&python);
        cmd.args(["-c", &check]);
        let (status, _) = run(cmd, Duration::from_secs(60));
        status.is_some_and(|s| s.success())
    };
    if has_irc() {
        return python;
    }
    // Missing, half-installed, another version, or made by another Python: start afresh.
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv", "--clear"]).arg(&venv);
    let (status, output) = run(cmd, INSTALL_BOUND);
    assert!(
        status.is_some_and(|s| s.success()),
        "could not create a Python virtualenv at {} with `python3 -m venv` ({status:?}); \
         Python 3 with venv is needed (apt-get install python3-venv):\n{output}",
        venv.display()
    );
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", &format!("irc=={IRC_VERSION}")]);
    let (status, output) = run(cmd, INSTALL_BOUND);
    assert!(
        status.is_some_and(|s| s.success()),
        "`pip install irc=={IRC_VERSION}` into {} failed ({}); it needs PyPI to be reachable:\n{output}",
        venv.display(),
        status.map_or_else(|| format!("killed after {INSTALL_BOUND:?}"), |s| s.to_string())
    );
    assert!(has_irc(), "irc=={IRC_VERSION} is still not importable from {} after pip install", python.display());
    python
}

#[test]
fn python_irc_library_registers_joins_and_exchanges_messages() {
    let python = pyenv_python();
    let server = Server::start(&["--mode", "chat"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_irc_client.py");
    let mut cmd = Command::new(&python);
    cmd.arg("-u").arg(&script).arg(server.addr().port().to_string());
    let (status, output) = run(cmd, SCRIPT_BOUND);
    match status {
        Some(st) if st.success() => {}
        Some(st) => {
            panic!("{} exited with {st}; its output:\n{output}\nserver log:\n{}", script.display(), server.log())
        }
        None => panic!("{} did not finish within {SCRIPT_BOUND:?}; its output:\n{output}", script.display()),
    }
    assert!(output.contains("ok: all"), "the script exited 0 without finishing:\n{output}");
    eprintln!("{output}");
}
