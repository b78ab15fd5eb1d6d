//! `--plot FILE.svg`: one picture of a run, drawn with plotters' SVG backend (SVG text is left
//! to the viewer's fonts, so no font files are needed here). Top left: the latency percentiles;
//! top right: p99 per second; bottom: completions per second.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Report;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;
const FONT: &str = "sans-serif";
const LABELS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub fn draw(r: &Report, path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "echoport-load {} → {}  ({} conns, {:.1} s, {} {}, {:.0}/s)",
        r.scenario, r.target, r.conns, r.duration_secs, r.messages, r.unit, r.per_sec
    );
    let root = root.titled(&title, (FONT, 20)).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2 - 20);
    let (left, right) = top.split_horizontally(WIDTH / 2);
    percentiles(r, &left).map_err(|e| err(&e))?;
    p99_over_time(r, &right).map_err(|e| err(&e))?;
    throughput(r, &bottom).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

type Res = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

/// An upper bound for a log axis that leaves headroom above the largest value.
fn log_top(max: u64) -> f64 {
    (max.max(1) as f64 * 2.0).max(10.0)
}

fn percentiles(r: &Report, area: &Area) -> Res {
    let l = &r.latency_us;
    let values = [l.p50, l.p90, l.p99, l.p999, l.max];
    let mut chart = ChartBuilder::on(area)
        .caption("latency percentiles (µs, log scale)", (FONT, 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.3f64..4.3f64, (1f64..log_top(l.max)).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..5.0).contains(&i) { LABELS[i as usize].to_string() } else { String::new() }
        })
        .y_desc("µs")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as f64, v.max(1) as f64)).collect();
    chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
    chart.draw_series(
        points.iter().zip(values).map(|(&p, v)| Text::new(v.to_string(), (p.0 + 0.08, p.1), (FONT, 13))),
    )?;
    Ok(())
}

fn p99_over_time(r: &Report, area: &Area) -> Res {
    let points: Vec<(f64, f64)> =
        r.timeline.iter().filter_map(|p| p.p99_us.map(|v| (p.t + 0.5, v.max(1) as f64))).collect();
    let top = points.iter().map(|p| p.1 as u64).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(area)
        .caption("p99 latency per second (µs, log scale)", (FONT, 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_end(r), (1f64..log_top(top)).log_scale())?;
    chart.configure_mesh().x_desc(r.time_axis).y_desc("µs").y_label_formatter(&|v| format!("{v:.0}")).draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), RED.stroke_width(2)))?;
    // Markers keep a one-second timeline (a single point, no line) visible.
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, RED.filled())))?;
    Ok(())
}

fn throughput(r: &Report, area: &Area) -> Res {
    // A partial last second is scaled to a rate so it does not look like a dip.
    let points: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|p| {
            let width = (r.span_secs - p.t).clamp(0.05, 1.0);
            (p.t + 0.5, p.messages as f64 / width)
        })
        .collect();
    let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} per second", r.unit), (FONT, 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_end(r), 0f64..top)?;
    chart.configure_mesh().x_desc(r.time_axis).y_desc("per second").y_label_formatter(&|v| format!("{v:.0}")).draw()?;
    let green = RGBColor(0, 130, 0);
    chart.draw_series(LineSeries::new(points.iter().copied(), green.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, green.filled())))?;
    if let Some(rate) = r.rate_target {
        chart.draw_series(LineSeries::new([(0.0, rate), (x_end(r), rate)], BLACK.mix(0.4)))?;
    }
    Ok(())
}

fn x_end(r: &Report) -> f64 {
    (r.timeline.len() as f64).max(r.span_secs).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;
    use std::time::{Duration, Instant};

    #[test]
    fn writes_an_svg() {
        let t0 = Instant::now();
        let mut rec = Recorder::new(t0, 3);
        for i in 0..3000u64 {
            rec.record(t0 + Duration::from_millis(i), Duration::from_micros(20 + i % 500));
        }
        let mut r = Report::new("echo", "127.0.0.1:7".into(), &rec, 3.0);
        r.rate_target = Some(1000.0);
        let path = std::env::temp_dir().join(format!("echoport-load-plot-{}.svg", std::process::id()));
        draw(&r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
        assert!(svg.contains("p99.9"));

        // An empty run (nothing completed) still draws.
        let empty = Report::new("idle", "x".into(), &Recorder::new(t0, 1), 0.0);
        let path = std::env::temp_dir().join(format!("echoport-load-empty-{}.svg", std::process::id()));
        draw(&empty, &path).unwrap();
        let _ = std::fs::remove_file(&path);
    }
}
