//! What a benchmark leaves for `cargo xtask bench --report`: its printed tables and the series
//! to plot, as `target/bench/<bench>.json` ([`BenchOut`]). The report reads every such file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    /// Grouped bars: one group per category, one bar per series.
    Bar,
    /// Lines through numeric points (x ascending), one per series.
    Line,
}

/// One named series: `(category, value)` for bar charts, `(x, y)` for line charts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    /// Bar charts: the category of each value, parallel to `y`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Line charts: x of each point, parallel to `y`.
    #[serde(default)]
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// A chart: its title (also its key within a benchmark), axis labels and series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chart {
    pub title: String,
    pub kind: ChartKind,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The results of one benchmark run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchOut {
    /// The benchmark's name as `cargo xtask bench` knows it (`l4-node`, `l7`, ...).
    pub bench: String,
    /// Seconds since the Unix epoch, when the run ended.
    pub unix_time: u64,
    /// Online CPUs of the machine the run was on.
    pub cores: usize,
    /// Load average (1, 5, 15 min) when the run ended: the machine may be shared.
    pub load_average: String,
    /// Preformatted tables as the benchmark printed them.
    pub tables: Vec<String>,
    pub charts: Vec<Chart>,
}

impl BenchOut {
    pub fn new(bench: &str) -> BenchOut {
        BenchOut {
            bench: bench.to_string(),
            unix_time: 0,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_average: String::new(),
            tables: Vec::new(),
            charts: Vec::new(),
        }
    }

    /// Adds a printed table (kept verbatim, shown as a code block).
    pub fn table(&mut self, text: &str) {
        self.tables.push(text.trim_matches('\n').to_string());
    }

    /// Adds `value` for `category` to series `series` of bar chart `chart` (made on first use).
    pub fn bar(&mut self, chart: &str, y_label: &str, category: &str, series: &str, value: f64) {
        let s = self.series(chart, ChartKind::Bar, "", y_label, series);
        s.categories.push(category.to_string());
        s.y.push(value);
    }

    /// Adds the point `(x, y)` to series `series` of line chart `chart` (made on first use).
    pub fn point(&mut self, chart: &str, labels: [&str; 2], series: &str, x: f64, y: f64) {
        let s = self.series(chart, ChartKind::Line, labels[0], labels[1], series);
        s.x.push(x);
        s.y.push(y);
    }

    fn series(
        &mut self,
        chart: &str,
        kind: ChartKind,
        x_label: &str,
        y_label: &str,
        name: &str,
    ) -> &mut Series {
        let ci = match self.charts.iter().position(|c| c.title == chart) {
            Some(i) => i,
            None => {
                self.charts.push(Chart {
                    title: chart.to_string(),
                    kind,
                    x_label: x_label.to_string(),
                    y_label: y_label.to_string(),
                    series: Vec::new(),
                });
                self.charts.len() - 1
            }
        };
        let c = &mut self.charts[ci];
        let si = match c.series.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => {
                c.series.push(Series {
                    name: name.to_string(),
                    ..Series::default()
                });
                c.series.len() - 1
            }
        };
        &mut c.series[si]
    }

    /// Writes `target/bench/<bench>.json` (directory made if missing); returns its path. A
    /// benchmark's numbers are printed already, so a failed write only warns.
    pub fn write(mut self) -> Option<PathBuf> {
        self.unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.load_average = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let dir = bench_dir();
        let path = dir.join(format!("{}.json", self.bench));
        let res = std::fs::create_dir_all(&dir).and_then(|()| {
            let json = serde_json::to_vec_pretty(&self).map_err(std::io::Error::other)?;
            std::fs::write(&path, json)
        });
        match res {
            Ok(()) => Some(path),
            Err(e) => {
                eprintln!("warning: writing {}: {e}", path.display());
                None
            }
        }
    }
}

/// `target/bench` of the workspace (`$XDP_INGRESS_BENCH_DIR` overrides it).
pub fn bench_dir() -> PathBuf {
    std::env::var_os("XDP_INGRESS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/bench"))
}

/// Every `*.json` result under `dir` that parses, sorted by benchmark name.
pub fn read_all(dir: &std::path::Path) -> Vec<BenchOut> {
    let mut all: Vec<BenchOut> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    all.sort_by(|a, b| a.bench.cmp(&b.bench));
    all
}
