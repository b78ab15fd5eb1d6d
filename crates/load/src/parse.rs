//! Value parsers for the command line. Each one turns a bad value into a one-line reason, which
//! clap prints naming the flag and exits with status 2, before any connection is opened.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The longest duration accepted anywhere: keeps `Duration::from_secs_f64` far from overflow
/// and every loop bounded in practice.
const MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The largest message or write size: a bigger one is almost surely a typo, and each
/// connection holds a buffer of this size.
const MAX_SIZE: usize = 1 << 30;

/// Seconds, fractions allowed ("0.5"), or a humantime duration ("500ms", "2m"); zero allowed.
pub fn secs(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let v = match s.parse::<f64>() {
        Ok(v) => v,
        Err(_) => humantime::parse_duration(s)
            .map_err(|_| format!("`{s}` is not a number of seconds (e.g. 5, 0.5, 500ms)"))?
            .as_secs_f64(),
    };
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be zero or more seconds"));
    }
    if v > MAX_SECS {
        return Err(format!("`{s}` is longer than a week"));
    }
    Ok(v)
}

/// Like [`secs`] but strictly positive (a run duration).
pub fn pos_secs(s: &str) -> Result<f64, String> {
    match secs(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err(format!("`{}` must be more than zero seconds", s.trim())),
    }
}

/// A byte count: `64`, `64k`/`64KiB` (x1024), `1m`/`1MiB` (x1024²); at least 1.
pub fn size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("`{t}` is not a size (e.g. 64, 16k, 1MiB)")),
    };
    let n: usize = digits.parse().map_err(|_| format!("`{t}` is not a size (e.g. 64, 16k, 1MiB)"))?;
    match n.checked_mul(mult) {
        Some(0) => Err(format!("`{t}` must be at least one byte")),
        Some(v) if v <= MAX_SIZE => Ok(v),
        _ => Err(format!("`{t}` is larger than 1 GiB")),
    }
}

/// A positive, finite rate per second.
pub fn rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(v),
        _ => Err(format!("`{}` is not a positive rate per second", s.trim())),
    }
}

/// `HOST:PORT`, resolved once here so a bad name is an argument error, not a run error.
pub fn target(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let mut addrs = s.to_socket_addrs().map_err(|e| format!("`{s}` is not HOST:PORT ({e})"))?;
    addrs.next().ok_or_else(|| format!("`{s}` resolves to no address"))
}

/// The `--plot` file. Only SVG: plotters' bitmap backend cannot draw text without system fonts
/// (its built-in font only measures text), so PNG output would be a chart without labels.
pub fn plot_path(s: &str) -> Result<PathBuf, String> {
    let lower = s.to_ascii_lowercase();
    if lower.ends_with(".svg") {
        Ok(PathBuf::from(s))
    } else if lower.ends_with(".png") {
        Err("PNG is not supported (no fonts for bitmap text); use a .svg file".into())
    } else {
        Err(format!("`{s}` must end in .svg"))
    }
}

/// Seconds as a `Duration`; the parsers above keep the value finite and in range.
pub fn dur(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.clamp(0.0, MAX_SECS)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(secs("0.5"), Ok(0.5));
        assert_eq!(secs("2"), Ok(2.0));
        assert_eq!(secs("500ms"), Ok(0.5));
        assert!(secs("-1").is_err());
        assert!(secs("nan").is_err());
        assert!(secs("inf").is_err());
        assert!(secs("1e300").is_err());
        assert!(pos_secs("0").is_err());
        assert!(secs("abc").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64"), Ok(64));
        assert_eq!(size("64k"), Ok(65536));
        assert_eq!(size("64 KiB"), Ok(65536));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert!(size("0").is_err());
        assert!(size("2g").is_err());
        assert!(size("99999999999999999999999").is_err());
        assert!(size("k").is_err());
        assert!(size("").is_err());
    }

    #[test]
    fn plots_and_targets() {
        assert!(plot_path("a.svg").is_ok());
        assert!(plot_path("a.SVG").is_ok());
        assert!(plot_path("a.png").unwrap_err().contains("PNG"));
        assert!(plot_path("a").is_err());
        assert_eq!(target("127.0.0.1:9"), Ok("127.0.0.1:9".parse().unwrap()));
        assert!(target("nonsense").is_err());
        assert!(rate("0").is_err());
        assert_eq!(rate("2000"), Ok(2000.0));
    }
}
