//! Running the echoport-load binary as a child process, bounded by `BOUND`, and reading its
//! `--json` report; shared by the test files that drive the tool.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use serde_json::Value;

use super::BOUND;

/// A temporary file path, removed on drop.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(ext: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("echoport-load-test-{}-{n}.{ext}", std::process::id())))
    }
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Kills and reaps the child unless it was reaped already.
pub struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub json: Option<Value>,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn j(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| panic!("no JSON report\n{}", self.explain()))
    }
    pub fn u(&self, key: &str) -> u64 {
        self.j()[key].as_u64().unwrap_or_else(|| panic!("`{key}` is not an integer\n{}", self.explain()))
    }
    pub fn f(&self, key: &str) -> f64 {
        self.j()[key].as_f64().unwrap_or_else(|| panic!("`{key}` is not a number\n{}", self.explain()))
    }
    pub fn explain(&self) -> String {
        format!("status: {:?}\nstdout:\n{}\nstderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Run echoport-load with `args` plus `--quiet --json FILE`; bounded by `BOUND`.
pub fn load(args: &[&str]) -> Run {
    let json = TempPath::new("json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--quiet", "--json", json.arg()]);
    run_raw(&all, Some(&json))
}

pub fn run_raw(args: &[&str], json: Option<&TempPath>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echoport-load"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echoport-load");
    let (tx, rx) = mpsc::channel();
    for (i, mut pipe) in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            let _ = tx.send((i, s));
        });
    }
    let mut guard = ChildGuard(Some(child));
    // Both pipes reach EOF when the child exits: that is the signal, bounded by BOUND.
    let mut out = [String::new(), String::new()];
    for _ in 0..2 {
        match rx.recv_timeout(BOUND) {
            Ok((i, s)) => out[i] = s,
            Err(_) => panic!("echoport-load {args:?} did not finish within {BOUND:?}"),
        }
    }
    let status = guard.0.take().expect("child").wait().expect("wait for echoport-load");
    let json = json.and_then(|p| std::fs::read_to_string(&p.0).ok()).and_then(|s| serde_json::from_str(&s).ok());
    let [stdout, stderr] = out;
    Run { status, stdout, stderr, json }
}
