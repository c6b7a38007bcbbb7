//! SVG plots of `--json` records (`synod-bench plot`).
//!
//! Two kinds of chart, one line per target (what `--label` named, e.g.
//! synod and etcd), so two servers driven alike show side by side:
//! - `throughput-WORKLOAD.svg`: throughput against clients (requests in
//!   flight), on a logarithmic client axis; repeated runs of one target at
//!   one client count are drawn as their median;
//! - `timeline-WORKLOAD-cCLIENTS.svg`: one run per target over time, its
//!   throughput each second above, its p50 (dashed) and p99 latency each
//!   second below, on a logarithmic axis. A second in which nothing
//!   completed shows as a throughput of 0 and a gap in the latency lines.
//!   The throughput line leaves out the drain: seconds from the run's
//!   `--duration` on, when no new request is issued and only those in
//!   flight complete (their latencies are drawn).
//!
//! Text is left to the SVG viewer's sans-serif font: plotters is built
//! without its font features, so no system font library or font file is
//! needed, and label widths are plotters' estimate. This module only draws
//! what the records hold; it never measures or summarises beyond medians.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::record::RunRecord;

/// Line colours by target, in order of first appearance (Okabe and Ito's
/// palette, told apart by colour-blind readers too).
const COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

const FONT: &str = "sans-serif";

/// Draws every chart the records allow into `out` (made if missing) and
/// returns the files written.
pub fn plot(records: &[RunRecord], out: &Path) -> Result<Vec<PathBuf>> {
    if records.is_empty() {
        bail!("no records to plot");
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let targets = first_appearances(records.iter().map(|r| r.target.clone()));
    let mut written = Vec::new();
    for workload in first_appearances(records.iter().map(|r| r.workload.clone())) {
        let runs: Vec<&RunRecord> = records.iter().filter(|r| r.workload == workload).collect();
        let path = out.join(format!("throughput-{}.svg", file_part(&workload)));
        throughput_against_clients(&path, &workload, &runs, &targets)
            .with_context(|| format!("drawing {}", path.display()))?;
        written.push(path);
        let mut clients: Vec<usize> = runs.iter().map(|r| r.clients).collect();
        clients.sort_unstable();
        clients.dedup();
        for n in clients {
            let at_n: Vec<&RunRecord> = runs.iter().copied().filter(|r| r.clients == n).collect();
            let path = out.join(format!("timeline-{}-c{n}.svg", file_part(&workload)));
            over_time(&path, &workload, n, &at_n, &targets).with_context(|| format!("drawing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

fn throughput_against_clients(path: &Path, workload: &str, runs: &[&RunRecord], targets: &[String]) -> Result<()> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut clients: Vec<f64> = runs.iter().map(|r| r.clients as f64).collect();
    clients.sort_by(f64::total_cmp);
    clients.dedup();
    let (low, high) = (clients[0] / 1.5, clients[clients.len() - 1] * 1.5);
    let top = runs.iter().map(|r| r.headline_throughput()).fold(0.0, f64::max).max(1.0) * 1.25;
    let unit = if workload == "watch-fanout" { "events/s" } else { "ops/s" };
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{workload}: throughput against clients"), (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d((low..high).log_scale().with_key_points(clients), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc(format!("clients (requests in flight){}", seconds_per_run(runs)))
        .y_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 14))
        .max_light_lines(1)
        .draw()?;
    for (i, target) in targets.iter().enumerate() {
        let points = medians_by_clients(runs.iter().copied().filter(|r| &r.target == target));
        if points.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
            .label(target.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn over_time(path: &Path, workload: &str, clients: usize, runs: &[&RunRecord], targets: &[String]) -> Result<()> {
    let root = SVGBackend::new(path, (800, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&format!("{workload}, {clients} clients: throughput and latency over time"), (FONT, 22))?;
    let (upper, lower) = root.split_vertically(330);
    let end = runs.iter().flat_map(|r| r.timeline.last()).map(|i| i.second as f64 + i.span_s).fold(1.0, f64::max);
    throughput_over_time(&upper, workload, runs, targets, end)?;
    latency_over_time(&lower, runs, targets, end)?;
    root.present()?;
    Ok(())
}

fn throughput_over_time(
    area: &DrawingArea<SVGBackend, Shift>,
    workload: &str,
    runs: &[&RunRecord],
    targets: &[String],
    end: f64,
) -> Result<()> {
    let points = |run: &RunRecord| -> Vec<(f64, f64)> {
        let drain = run.parameters.duration_s.unwrap_or(f64::INFINITY);
        run.timeline
            .iter()
            .filter(|i| (i.second as f64) < drain)
            .map(|i| (i.second as f64 + i.span_s / 2.0, i.throughput_ops_s))
            .collect()
    };
    // Headroom above the lines for the legend.
    let top = runs.iter().flat_map(|r| points(r)).map(|(_, y)| y).fold(0.0, f64::max).max(1.0) * 1.4;
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc(if workload == "watch-fanout" { "puts/s" } else { "ops/s" })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 14))
        .max_light_lines(1)
        .draw()?;
    for (run, colour) in runs_with_colours(runs, targets) {
        chart
            .draw_series(LineSeries::new(points(run), colour.stroke_width(2)))?
            .label(run.target.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend(&mut chart)?;
    Ok(())
}

fn latency_over_time(
    area: &DrawingArea<SVGBackend, Shift>,
    runs: &[&RunRecord],
    targets: &[String],
    end: f64,
) -> Result<()> {
    let values = runs.iter().flat_map(|r| &r.timeline).flat_map(|i| [i.p50_ms, i.p99_ms]).flatten();
    let (low, high) = values.fold((f64::INFINITY, 0.0_f64), |(low, high), v| (low.min(v), high.max(v)));
    // Headroom above the lines for the legend (a log axis: a factor).
    let (low, high) = if low.is_finite() && high > 0.0 { (low / 1.5, high * 6.0) } else { (0.1, 10.0) };
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..end, (low..high).log_scale().with_key_points(one_two_five(low, high)))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the run")
        .y_desc("latency, ms (log scale)")
        .y_label_formatter(&|y| format!("{y}"))
        .label_style((FONT, 14))
        .max_light_lines(1)
        .draw()?;
    for (run, colour) in runs_with_colours(runs, targets) {
        let point =
            |value: Option<f64>, i: &crate::record::Interval| value.map(|v| (i.second as f64 + i.span_s / 2.0, v));
        let p99: Vec<Option<(f64, f64)>> = run.timeline.iter().map(|i| point(i.p99_ms, i)).collect();
        let p50: Vec<Option<(f64, f64)>> = run.timeline.iter().map(|i| point(i.p50_ms, i)).collect();
        let solid = colour.stroke_width(2);
        let dashed = colour.stroke_width(1);
        for (n, segment) in segments(&p99).enumerate() {
            let series = chart.draw_series(LineSeries::new(segment, solid))?;
            if n == 0 {
                series
                    .label(format!("{} p99", run.target))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], solid));
            }
        }
        for (n, segment) in segments(&p50).enumerate() {
            let series = chart.draw_series(DashedLineSeries::new(segment, 6, 4, dashed))?;
            if n == 0 {
                series.label(format!("{} p50", run.target)).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new([(0, 0), (8, 0)], dashed)
                        + PathElement::new([(12, 0), (20, 0)], dashed)
                });
            }
        }
    }
    legend(&mut chart)?;
    Ok(())
}

fn legend<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged,
    Y: plotters::coord::ranged1d::Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// Each run with its target's colour, in target order.
fn runs_with_colours<'r>(runs: &[&'r RunRecord], targets: &[String]) -> Vec<(&'r RunRecord, RGBColor)> {
    let colour = |target: &str| COLOURS[targets.iter().position(|t| t == target).unwrap_or(0) % COLOURS.len()];
    let mut out: Vec<(&RunRecord, RGBColor)> = runs.iter().map(|&r| (r, colour(&r.target))).collect();
    out.sort_by_key(|(r, _)| targets.iter().position(|t| *t == r.target));
    out
}

/// The runs of consecutive seconds that have a value: a line is drawn
/// through each, and nothing across a second without one.
fn segments(points: &[Option<(f64, f64)>]) -> impl Iterator<Item = Vec<(f64, f64)>> + '_ {
    points.split(Option::is_none).filter(|s| !s.is_empty()).map(|s| s.iter().flatten().copied().collect())
}

/// The values 1, 2 and 5 times a power of ten from `low` to `high`:
/// labels for a logarithmic axis.
fn one_two_five(low: f64, high: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powi(low.log10().floor() as i32);
    while decade <= high {
        for step in [1.0, 2.0, 5.0] {
            let tick = decade * step;
            if (low..=high).contains(&tick) {
                // Rounded so 0.1 * 3 prints as 0.3, not 0.30000000000000004.
                ticks.push(format!("{tick:.6}").parse().unwrap_or(tick));
            }
        }
        decade *= 10.0;
    }
    ticks
}

/// (clients, median throughput) of a target's runs, by client count.
pub fn medians_by_clients<'r>(runs: impl Iterator<Item = &'r RunRecord>) -> Vec<(f64, f64)> {
    let mut by_clients: Vec<(usize, Vec<f64>)> = Vec::new();
    for run in runs {
        match by_clients.iter_mut().find(|(n, _)| *n == run.clients) {
            Some((_, values)) => values.push(run.headline_throughput()),
            None => by_clients.push((run.clients, vec![run.headline_throughput()])),
        }
    }
    by_clients.sort_by_key(|(n, _)| *n);
    by_clients.into_iter().map(|(n, values)| (n as f64, median(values))).collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// ", N s per run" when every run had the same duration setting.
fn seconds_per_run(runs: &[&RunRecord]) -> String {
    let durations = first_appearances(runs.iter().map(|r| r.parameters.duration_s.map(|d| format!("{d}"))));
    match durations.as_slice() {
        [Some(d)] => format!(", {d} s per run"),
        _ => String::new(),
    }
}

fn first_appearances<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A workload name made safe for a file name.
fn file_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_runs_at_one_client_count_give_their_median() {
        let golden = RunRecord::from_json(include_str!("../tests/data/record-v1-synod-c16.json")).unwrap();
        let at = |clients: usize, ops: f64| RunRecord { clients, throughput_ops_s: ops, ..golden.clone() };
        let runs = [at(16, 300.0), at(1, 50.0), at(16, 100.0), at(16, 200.0), at(64, 10.0), at(64, 20.0)];
        assert_eq!(medians_by_clients(runs.iter()), vec![(1.0, 50.0), (16.0, 200.0), (64.0, 15.0)]);
    }

    #[test]
    fn latency_lines_break_at_seconds_without_a_value() {
        let points = [Some((0.5, 1.0)), Some((1.5, 2.0)), None, None, Some((4.5, 3.0))];
        let lines: Vec<Vec<(f64, f64)>> = segments(&points).collect();
        assert_eq!(lines, vec![vec![(0.5, 1.0), (1.5, 2.0)], vec![(4.5, 3.0)]]);
    }

    #[test]
    fn log_axis_labels_are_one_two_five_in_range() {
        assert_eq!(one_two_five(0.3, 60.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(one_two_five(1.0, 1.5), vec![1.0]);
    }

    #[test]
    fn workload_names_are_safe_in_file_names() {
        assert_eq!(file_part("get-serializable"), "get-serializable");
        assert_eq!(file_part("../x y"), "___x_y");
    }
}
