//! `cargo xtask bench --report`: `target/bench/report.md` from the results the benchmarks left
//! there (`<bench>.json`, see `testbed::bench_out`), with one SVG per chart next to it. A
//! benchmark without JSON tables is shown by the output it printed (`<bench>.log`, captured by
//! `cargo xtask bench`).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context;
use plotters::prelude::*;
use testbed::bench_out::{Chart, ChartKind, read_all};

const SIZE: (u32, u32) = (760, 380);
const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Writes `dir/report.md` and its charts; returns the report's path.
pub fn write(dir: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let results = read_all(dir);
    let mut md = String::from("# xdp-ingress benchmark report\n\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench --report` from `target/bench/*.json`; each section says \
         when its benchmark ran. Ratios are against peers measured in the same run.\n"
    );
    for name in names {
        let json = results.iter().find(|r| r.bench == *name);
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).ok();
        if json.is_none() && log.is_none() {
            continue;
        }
        let _ = writeln!(md, "## {name}\n");
        if let Some(r) = json {
            let _ = writeln!(
                md,
                "Run {} UTC on {} cores, load average {}.\n",
                utc(r.unix_time),
                r.cores,
                r.load_average
            );
        }
        let tables: Vec<String> = match (json, &log) {
            (Some(r), _) if !r.tables.is_empty() => r.tables.clone(),
            (_, Some(l)) => vec![printed(l)],
            _ => Vec::new(),
        };
        for t in tables {
            let _ = writeln!(md, "```text\n{t}\n```\n");
        }
        for (i, c) in json
            .map(|r| r.charts.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let file = format!("{name}-{i}.svg");
            match draw(c, &dir.join(&file)) {
                Ok(()) => {
                    let _ = writeln!(md, "![{}]({file})\n", c.title);
                }
                Err(e) => {
                    let _ = writeln!(md, "(chart \"{}\" not drawn: {e:#})\n", c.title);
                }
            }
        }
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What a benchmark printed, without cargo's and the test harness's lines.
fn printed(log: &str) -> String {
    log.lines()
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("running ")
                || t.starts_with("test ")
                || t.starts_with("test result:")
                || t.starts_with("Running ")
                || t.starts_with("Finished ")
                || t.starts_with("Compiling "))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_matches('\n')
        .to_string()
}

/// `YYYY-MM-DD HH:MM` of a Unix time (UTC; days to civil date after H. Hinnant).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

fn draw(c: &Chart, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    match c.kind {
        ChartKind::Bar => bars(&root, c),
        ChartKind::Line => lines(&root, c),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// `1.5M`, `20k`, `12.5`: axis numbers short enough for the label area.
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Grouped bars: categories along x (in order of first appearance), one bar per series.
fn bars(root: &Area, c: &Chart) -> DrawResult {
    let mut cats: Vec<&str> = Vec::new();
    for s in &c.series {
        for k in &s.categories {
            if !cats.contains(&k.as_str()) {
                cats.push(k);
            }
        }
    }
    let top = y_top(c);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..cats.len().max(1) as f64, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| human(*v))
        .y_desc(c.y_label.as_str())
        .draw()
        .map_err(err)?;
    let n = c.series.len().max(1) as f64;
    let width = 0.8 / n;
    for (si, s) in c.series.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let rects = s.categories.iter().zip(&s.y).filter_map(|(k, v)| {
            let ci = cats.iter().position(|x| x == k)? as f64;
            let x0 = ci + 0.1 + width * si as f64;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.92, *v)],
                color.filled(),
            ))
        });
        let drawn = chart.draw_series(rects).map_err(err)?;
        if c.series.len() > 1 {
            drawn.label(s.name.as_str()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
            });
        }
    }
    // Category names under each group (the mesh's own labels fall at round numbers).
    let style = TextStyle::from(("sans-serif", 13)).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Top,
    ));
    for (i, k) in cats.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(k.to_string(), (x, y + 8), style.clone()))
            .map_err(err)?;
    }
    if c.series.len() > 1 {
        legend(&mut chart)?;
    }
    Ok(())
}

/// Lines through `(x, y)` points, one per series, markers on the points.
fn lines(root: &Area, c: &Chart) -> DrawResult {
    let xs = c.series.iter().flat_map(|s| s.x.iter().copied());
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (x0, x1) = if x0 < x1 {
        (x0, x1)
    } else if x0 <= x1 {
        (x0 * 0.5, x1 * 1.5 + 1.0)
    } else {
        (0.0, 1.0)
    };
    let top = y_top(c);
    let mut chart = ChartBuilder::on(root)
        .caption(&c.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .x_label_formatter(&|v| human(*v))
        .y_label_formatter(&|v| human(*v))
        .y_desc(c.y_label.as_str())
        .draw()
        .map_err(err)?;
    for (si, s) in c.series.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let mut pts: Vec<(f64, f64)> = s.x.iter().copied().zip(s.y.iter().copied()).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    legend(&mut chart)
}

/// The y axis' end: 15% above the largest finite value, 1 when there is none.
fn y_top(c: &Chart) -> f64 {
    let top = c
        .series
        .iter()
        .flat_map(|s| s.y.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    if top > 0.0 { top * 1.15 } else { 1.0 }
}

/// The series' legend box, in the chart's upper right corner.
fn legend<'a, 'b: 'a>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use testbed::bench_out::BenchOut;

    use super::*;

    /// Both chart kinds draw, each series with its legend entry, and the report links them.
    #[test]
    fn bars_and_lines_draw_with_their_legends() {
        let mut out = BenchOut::new("l7");
        for (proto, ours, nginx) in [("HTTP/1.1", 9000.0, 7000.0), ("h2", 12000.0, 8000.0)] {
            out.bar("req/s", "requests/s", proto, "xdp-ingress", ours);
            out.bar("req/s", "requests/s", proto, "nginx", nginx);
        }
        for (n, p99) in [(1000.0, 2.0), (3000.0, 4.5), (10000.0, 9.0)] {
            out.point("event to live", ["objects", "ms"], "p99", n, p99);
            out.point("event to live", ["objects", "ms"], "p50", n, p99 / 3.0);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("l7.json"),
            serde_json::to_string(&out).unwrap(),
        )
        .unwrap();
        let report = std::fs::read_to_string(write(dir.path(), &["l7"]).unwrap()).unwrap();
        for (i, legend) in [(0, ["xdp-ingress", "nginx"]), (1, ["p99", "p50"])] {
            assert!(report.contains(&format!("(l7-{i}.svg)")), "{report}");
            let svg = std::fs::read_to_string(dir.path().join(format!("l7-{i}.svg"))).unwrap();
            for name in legend {
                assert!(svg.contains(name), "chart {i} has no legend entry {name}");
            }
        }
    }
}
