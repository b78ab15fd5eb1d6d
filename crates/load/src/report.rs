//! The outcome of a run: one `Report` per run, printed as a human table on stdout and written
//! as one JSON object with `--json`. docs/load.md documents every field; keep them stable.

use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Map, Value};

use super::record::Recorder;

#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    pub count: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: round2(h.mean()),
            count: h.len(),
        }
    }
}

/// TLS handshake times in microseconds, from the ClientHello written to the server's Finished
/// verified (the `handshake` field, present only with `--tls`).
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Handshake {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Handshake {
    pub fn of(h: &Histogram<u64>) -> Handshake {
        Handshake { count: h.len(), p50: h.value_at_quantile(0.5), p99: h.value_at_quantile(0.99), max: h.max() }
    }
}

/// One second of the timeline: what completed in `[t, t + 1)` seconds after warm-up ended.
/// The last second may be partial; completions while draining after the end count in it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Point {
    pub t: f64,
    pub messages: u64,
    /// None where the scenario records no per-second latency (chat) or nothing completed.
    pub p99_us: Option<u64>,
}

pub fn timeline(rec: &Recorder) -> Vec<Point> {
    rec.seconds
        .iter()
        .enumerate()
        .map(|(i, s)| Point {
            t: i as f64,
            messages: s.count,
            p99_us: (s.count > 0).then(|| s.hist.value_at_quantile(0.99)),
        })
        .collect()
}

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    pub scenario: &'static str,
    pub target: String,
    pub conns: u64,
    pub size: Option<u64>,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    /// Messages per second asked for with `--rate`; null for a closed loop.
    pub rate_target: Option<f64>,
    pub messages: u64,
    pub per_sec: f64,
    /// Megabytes (10^6 bytes) per second sent and received; null where meaningless.
    pub mbps_out: Option<f64>,
    pub mbps_in: Option<f64>,
    pub latency_us: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Handshake>,
    pub errors: u64,
    pub mismatches: u64,
    pub timeline: Vec<Point>,
    /// Scenario-specific fields, flattened into the top-level object.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// What one "message" is called in the table ("messages", "connections", "deliveries").
    #[serde(skip)]
    pub unit: &'static str,
    /// How long the timeline covers (the last second may be partial) and what its t counts from.
    #[serde(skip)]
    pub span_secs: f64,
    #[serde(skip)]
    pub time_axis: &'static str,
    /// One line per kind of failure (first occurrence), printed as `error: ...` on stderr.
    #[serde(skip)]
    pub problems: Vec<String>,
}

impl Report {
    /// A report with the common fields filled from the run's recorder.
    pub fn new(scenario: &'static str, target: String, rec: &Recorder, duration: f64) -> Report {
        let messages = rec.count();
        Report {
            scenario,
            target,
            conns: 0,
            size: None,
            duration_secs: duration,
            warmup_secs: 0.0,
            rate_target: None,
            messages,
            per_sec: per_sec(messages, duration),
            mbps_out: None,
            mbps_in: None,
            latency_us: Latency::of(&rec.hist),
            handshake: None,
            errors: 0,
            mismatches: 0,
            timeline: timeline(rec),
            extra: Map::new(),
            unit: "messages",
            span_secs: duration,
            time_axis: "seconds after warm-up",
            problems: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.to_owned(), value.into());
    }

    pub fn ok(&self) -> bool {
        self.errors == 0 && self.mismatches == 0
    }

    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and maps always serializes.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human table.
    pub fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let row = |out: &mut dyn Write, k: &str, v: String| writeln!(out, "{k:<14} {v}");
        row(out, "scenario", self.scenario.to_owned())?;
        row(out, "target", self.target.clone())?;
        row(out, "conns", self.conns.to_string())?;
        if let Some(size) = self.size {
            row(out, "size", format!("{size} B"))?;
        }
        row(out, "duration", format!("{:.2} s (+{:.2} s warm-up, not counted)", self.duration_secs, self.warmup_secs))?;
        match self.rate_target {
            Some(r) => row(out, "rate target", format!("{r:.0}/s (open loop)"))?,
            None if self.scenario == "echo" => row(out, "rate target", "closed loop".into())?,
            None => {}
        }
        row(out, self.unit, self.messages.to_string())?;
        row(out, "rate", format!("{:.1} {}/s", self.per_sec, self.unit))?;
        if let (Some(o), Some(i)) = (self.mbps_out, self.mbps_in) {
            row(out, "MB/s", format!("{o:.2} out, {i:.2} in"))?;
        }
        let l = &self.latency_us;
        writeln!(
            out,
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (us)", "p50", "p90", "p99", "p99.9", "max", "mean"
        )?;
        writeln!(out, "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9.1}", "", l.p50, l.p90, l.p99, l.p999, l.max, l.mean)?;
        if let Some(h) = &self.handshake {
            writeln!(out, "{:<14} {:>9} {:>9} {:>9} {:>9}", "handshake (us)", "count", "p50", "p99", "max")?;
            writeln!(out, "{:<14} {:>9} {:>9} {:>9} {:>9}", "", h.count, h.p50, h.p99, h.max)?;
        }
        row(out, "errors", self.errors.to_string())?;
        row(out, "mismatches", self.mismatches.to_string())?;
        for (k, v) in &self.extra {
            match v {
                Value::Array(_) | Value::Object(_) => {}
                Value::Null => row(out, k, "-".into())?,
                Value::String(s) => row(out, k, s.clone())?,
                v => row(out, k, v.to_string())?,
            }
        }
        Ok(())
    }
}

pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { round2(count as f64 / secs) } else { 0.0 }
}

pub fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 { round2(bytes as f64 / secs / 1e6) } else { 0.0 }
}

/// Two decimals are plenty for rates and keep the JSON readable.
pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn json_has_the_documented_fields() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, 2);
        rec.record(t0, Duration::from_micros(100));
        let mut r = Report::new("echo", "127.0.0.1:1".into(), &rec, 2.0);
        r.set("threads", 1);
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        for k in [
            "scenario",
            "target",
            "conns",
            "size",
            "duration_secs",
            "warmup_secs",
            "rate_target",
            "messages",
            "per_sec",
            "mbps_out",
            "mbps_in",
            "latency_us",
            "errors",
            "mismatches",
            "timeline",
            "threads",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["latency_us"]["count"], 1);
        assert_eq!(v["messages"], 1);
        assert_eq!(v["per_sec"], 0.5);
        let mut table = Vec::new();
        r.print(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("latency (us)") && table.contains("closed loop"));
        assert!(v.get("handshake").is_none() && !table.contains("handshake"), "only with --tls");
        r.handshake = Some(Handshake::of(&rec.hist));
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["handshake"]["count"], 1);
        let mut table = Vec::new();
        r.print(&mut table).unwrap();
        assert!(String::from_utf8(table).unwrap().contains("handshake (us)"));
    }
}
