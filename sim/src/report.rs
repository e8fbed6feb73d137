//! Run report: four PNG plots (rendered with `plotters`) and a markdown file.
//!
//! Entry point: [`write_report`]. Everything here is self-contained; the only
//! external file is the embedded DejaVu Sans font
//! (`assets/DejaVuSans.ttf`, licence in `assets/DejaVu-LICENSE.txt`).
//!
//! Design notes:
//! * Input series are downsampled to at most [`MAX_POINTS`] points before
//!   drawing (max within a bucket for level series, last value for
//!   cumulative series), so cost is dominated by PNG encoding, not by `n`.
//! * The four PNGs are rendered on scoped threads (they are independent).
//! * Bad data (empty, single sample, all zero, NaN/inf) never panics or
//!   errors; only failures to write files are returned as [`ReportError`].
//! * `report.md` is a pure function of the input (no timestamps, no maps).
//! * RAM is shown in GB with 1 GB = 1024 MB.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One sample of the run's state, taken at a fixed simulated interval.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Simulated time since trace start.
    pub t_ms: u64,
    /// RAM of servers requested and not yet stopped (running + starting + queued).
    pub demand_mb: u64,
    /// RAM placed on nodes.
    pub allocated_mb: u64,
    /// Usable RAM of healthy worker nodes.
    pub capacity_mb: u64,
    pub queue_len: u32,
    /// p95 wait of placements in the last sample interval (0 if none).
    pub wait_p95_s: f64,
    pub nodes_dedicated: u32,
    /// Healthy/booting rented nodes.
    pub nodes_cloud: u32,
    /// Placeholders being provisioned.
    pub nodes_pending: u32,
    /// Cumulative cost so far.
    pub cost_eur: f64,
    /// Cumulative clairvoyant lower bound so far.
    pub bound_eur: f64,
}

/// Everything [`write_report`] needs.
pub struct ReportInput<'a> {
    /// Scenario name.
    pub title: &'a str,
    pub policy: &'a str,
    pub seed: u64,
    pub samples: &'a [Sample],
    /// Key/value table rendered in report.md.
    pub summary_rows: &'a [(String, String)],
    /// Bullet list appended to report.md.
    pub notes: &'a [String],
}

/// Failure to write one of the report files. Display includes the path.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing report.md failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Rendering or encoding/saving a PNG failed (in practice: the file could
    /// not be written).
    #[error("cannot write plot {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

/// File names written into the report directory.
pub const DEMAND_CAPACITY_PNG: &str = "demand_capacity.png";
pub const QUEUE_WAIT_PNG: &str = "queue_wait.png";
pub const NODES_PNG: &str = "nodes.png";
pub const COST_PNG: &str = "cost.png";
pub const REPORT_MD: &str = "report.md";

/// Maximum number of points per plotted series.
pub const MAX_POINTS: usize = 2000;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 500;
const FONT: &str = "sans-serif";
/// Clamp for float inputs so that range arithmetic stays finite.
const FLOAT_LIMIT: f64 = 1e15;

const FONT_BYTES: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/DejaVuSans.ttf"));

// Colour palette (Tableau 10 subset), readable on white.
const C_BLUE: RGBColor = RGBColor(31, 119, 180);
const C_ORANGE: RGBColor = RGBColor(255, 127, 14);
const C_GREEN: RGBColor = RGBColor(44, 160, 44);
const C_RED: RGBColor = RGBColor(214, 39, 40);
const C_GREY: RGBColor = RGBColor(90, 90, 90);
const C_PURPLE: RGBColor = RGBColor(148, 103, 189);

/// A function drawing one plot onto a bitmap area.
type PlotFn = fn(&DrawingArea<BitMapBackend, Shift>, &Prepared) -> Result<(), String>;

/// Registers the embedded font with plotters once per process.
/// Returns false if registration failed (text would then fail to draw,
/// which surfaces as a `ReportError::Plot`, never a panic).
fn ensure_font() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok())
}

/// Writes `demand_capacity.png`, `queue_wait.png`, `nodes.png`, `cost.png`
/// and `report.md` into `dir` (which must exist).
///
/// Never panics on odd data; returns an error only if a file can't be written.
/// If several files fail, the first error (in the order above) is returned,
/// but every file is still attempted.
pub fn write_report(dir: &Path, input: &ReportInput) -> Result<(), ReportError> {
    ensure_font();
    let data = Prepared::new(input.samples);

    let jobs: [(&str, PlotFn); 4] = [
        (DEMAND_CAPACITY_PNG, draw_demand_capacity),
        (QUEUE_WAIT_PNG, draw_queue_wait),
        (NODES_PNG, draw_nodes),
        (COST_PNG, draw_cost),
    ];

    // Render the independent plots in parallel; PNG encoding dominates.
    // If a thread can't be spawned, render inline instead.
    let data = &data;
    let results: Vec<Result<(), ReportError>> = std::thread::scope(|s| {
        let pending: Vec<_> = jobs
            .iter()
            .map(|&(name, f)| {
                let path = dir.join(name);
                let p2 = path.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("report-{name}"))
                    .spawn_scoped(s, move || render_png(&p2, data, f));
                match spawned {
                    Ok(h) => (path, Some(h), None),
                    Err(_) => {
                        let r = render_png(&path, data, f);
                        (path, None, Some(r))
                    }
                }
            })
            .collect();
        pending
            .into_iter()
            .map(|(path, h, done)| match (h, done) {
                (_, Some(r)) => r,
                (Some(h), None) => h
                    .join()
                    .unwrap_or_else(|_| Err(ReportError::Plot { path, message: "plot renderer panicked".to_string() })),
                (None, None) => Ok(()),
            })
            .collect()
    });

    let md_path = dir.join(REPORT_MD);
    let md_result = std::fs::write(&md_path, render_markdown(input, data))
        .map_err(|source| ReportError::Io { path: md_path, source });

    for r in results {
        r?;
    }
    md_result
}

/// Renders one PNG. Drawing happens into a bitmap that is saved on `present`.
fn render_png(path: &Path, data: &Prepared, f: PlotFn) -> Result<(), ReportError> {
    let err = |message: String| ReportError::Plot { path: path.to_path_buf(), message };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    // A drawing failure (e.g. font problem) still leaves a (partial) image;
    // report it after saving.
    let drawn = f(&root, data);
    root.present().map_err(|e| err(e.to_string()))?;
    drawn.map_err(err)
}

// ---------------------------------------------------------------------------
// Data preparation
// ---------------------------------------------------------------------------

/// Time unit of the x axis.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TimeUnit {
    Hours,
    Days,
}

impl TimeUnit {
    fn ms_per_unit(self) -> f64 {
        match self {
            TimeUnit::Hours => 3_600_000.0,
            TimeUnit::Days => 86_400_000.0,
        }
    }
    fn label(self) -> &'static str {
        match self {
            TimeUnit::Hours => "simulated time (hours)",
            TimeUnit::Days => "simulated time (days)",
        }
    }
    fn word(self) -> &'static str {
        match self {
            TimeUnit::Hours => "h",
            TimeUnit::Days => "days",
        }
    }
}

/// One downsampled bucket. Level series hold the bucket max, cumulative
/// series the bucket's last value.
#[derive(Clone, Debug, Default)]
struct Bucket {
    t0: f64, // first time in bucket, in axis units
    t1: f64, // last time in bucket, in axis units
    demand_gb: f64,
    allocated_gb: f64,
    capacity_gb: f64,
    queue: f64,
    wait_s: f64,
    dedicated: f64,
    cloud: f64,
    pending: f64,
    cost: f64,
    bound: f64,
}

/// Downsampled, sanitized data plus whole-run statistics for the text.
struct Prepared {
    unit: TimeUnit,
    buckets: Vec<Bucket>,
    n_samples: usize,
    t_min: f64,
    t_max: f64,
    peak_demand_gb: f64,
    peak_allocated_gb: f64,
    peak_capacity_gb: f64,
    peak_queue: u32,
    peak_wait_s: f64,
    peak_dedicated: u32,
    peak_cloud: u32,
    peak_pending: u32,
    final_cost: f64,
    final_bound: f64,
}

fn clean(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(-FLOAT_LIMIT, FLOAT_LIMIT)
    } else {
        0.0
    }
}

fn mb_to_gb(mb: u64) -> f64 {
    clean(mb as f64 / 1024.0)
}

impl Prepared {
    fn new(samples: &[Sample]) -> Self {
        // Samples are expected sorted by time; tolerate unsorted input.
        let sorted_storage;
        let samples: &[Sample] = if samples.windows(2).all(|w| w[0].t_ms <= w[1].t_ms) {
            samples
        } else {
            let mut v = samples.to_vec();
            v.sort_by_key(|s| s.t_ms);
            sorted_storage = v;
            &sorted_storage
        };

        let t_max_ms = samples.last().map_or(0, |s| s.t_ms);
        let unit = if t_max_ms <= 72 * 3_600_000 { TimeUnit::Hours } else { TimeUnit::Days };
        let per = unit.ms_per_unit();

        let n = samples.len();
        let chunk = n.div_ceil(MAX_POINTS).max(1);
        let mut buckets = Vec::with_capacity(n.div_ceil(chunk));
        for c in samples.chunks(chunk) {
            let first = &c[0];
            let last = &c[c.len() - 1];
            let mut b = Bucket {
                t0: first.t_ms as f64 / per,
                t1: last.t_ms as f64 / per,
                cost: clean(last.cost_eur),
                bound: clean(last.bound_eur),
                ..Bucket::default()
            };
            let (mut dem, mut alloc, mut cap) = (0u64, 0u64, 0u64);
            let (mut q, mut ded, mut cl, mut pend) = (0u32, 0u32, 0u32, 0u32);
            let mut wait = 0.0f64;
            for s in c {
                dem = dem.max(s.demand_mb);
                alloc = alloc.max(s.allocated_mb);
                cap = cap.max(s.capacity_mb);
                q = q.max(s.queue_len);
                ded = ded.max(s.nodes_dedicated);
                cl = cl.max(s.nodes_cloud);
                pend = pend.max(s.nodes_pending);
                let w = clean(s.wait_p95_s).max(0.0);
                if w > wait {
                    wait = w;
                }
            }
            b.demand_gb = mb_to_gb(dem);
            b.allocated_gb = mb_to_gb(alloc);
            b.capacity_gb = mb_to_gb(cap);
            b.queue = clean(q as f64);
            b.wait_s = wait;
            b.dedicated = ded as f64;
            b.cloud = cl as f64;
            b.pending = pend as f64;
            buckets.push(b);
        }

        let fmax = |f: fn(&Bucket) -> f64| buckets.iter().map(f).fold(0.0f64, f64::max);
        Prepared {
            unit,
            n_samples: n,
            t_min: buckets.first().map_or(0.0, |b| b.t0),
            t_max: buckets.last().map_or(0.0, |b| b.t1),
            peak_demand_gb: fmax(|b| b.demand_gb),
            peak_allocated_gb: fmax(|b| b.allocated_gb),
            peak_capacity_gb: fmax(|b| b.capacity_gb),
            peak_queue: samples.iter().map(|s| s.queue_len).max().unwrap_or(0),
            peak_wait_s: fmax(|b| b.wait_s),
            peak_dedicated: samples.iter().map(|s| s.nodes_dedicated).max().unwrap_or(0),
            peak_cloud: samples.iter().map(|s| s.nodes_cloud).max().unwrap_or(0),
            peak_pending: samples.iter().map(|s| s.nodes_pending).max().unwrap_or(0),
            final_cost: buckets.last().map_or(0.0, |b| b.cost),
            final_bound: buckets.last().map_or(0.0, |b| b.bound),
            buckets,
        }
    }

    fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// x range, never degenerate.
    fn x_range(&self) -> (f64, f64) {
        if self.is_empty() {
            return (0.0, 1.0);
        }
        let (lo, hi) = nondegenerate(self.t_min, self.t_max, 1.0);
        if self.t_max - self.t_min < hi - lo {
            // Single instant: keep the point(s) off the y axis.
            let t = clean(self.t_min);
            (t - 0.03, t + 1.0)
        } else {
            (lo, hi)
        }
    }

    /// Level series: plotted at bucket start.
    fn level(&self, f: impl Fn(&Bucket) -> f64) -> Vec<(f64, f64)> {
        self.buckets.iter().map(|b| (b.t0, f(b))).collect()
    }

    /// Step series: horizontal then vertical segments, the last step extended
    /// to the end of the run.
    fn step(&self, f: impl Fn(&Bucket) -> f64) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = Vec::with_capacity(self.buckets.len() * 2 + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let y = f(b);
            if i > 0 {
                out.push((b.t0, out[out.len() - 1].1));
            }
            out.push((b.t0, y));
        }
        if let Some(b) = self.buckets.last() {
            if b.t1 > b.t0 {
                out.push((b.t1, f(b)));
            }
        }
        out
    }

    /// Cumulative series: plotted at bucket end.
    fn cumulative(&self, f: impl Fn(&Bucket) -> f64) -> Vec<(f64, f64)> {
        self.buckets.iter().map(|b| (b.t1, f(b))).collect()
    }
}

/// Returns a finite `(lo, hi)` with `hi > lo` by a meaningful margin.
fn nondegenerate(lo: f64, hi: f64, default_span: f64) -> (f64, f64) {
    // Data is clamped to ±FLOAT_LIMIT; ranges may extend a bit beyond that.
    let lim = FLOAT_LIMIT * 4.0;
    let fix = |v: f64| {
        if v.is_finite() {
            v.clamp(-lim, lim)
        } else {
            0.0
        }
    };
    let (lo, hi) = (fix(lo), fix(hi));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let min_span = 1e-6 * lo.abs().max(hi.abs()).max(1e-9);
    if hi - lo < min_span {
        let lo2 = if lo == 0.0 || hi == 0.0 { lo.min(0.0) } else { lo - default_span / 2.0 };
        (lo2, lo2 + default_span.max(min_span))
    } else {
        (lo, hi)
    }
}

/// y range from 0 (or the min if negative) to max plus `headroom` (fraction),
/// leaving room for the legend.
fn y_range<'a>(series: impl IntoIterator<Item = &'a [(f64, f64)]>, headroom: f64, default_hi: f64) -> (f64, f64) {
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for s in series {
        for &(_, y) in s {
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    if hi - lo <= 0.0 {
        return (lo - default_hi * 0.02, lo + default_hi);
    }
    let span = hi - lo;
    // A little room below the minimum so lines on it aren't hidden by the axis.
    nondegenerate(lo - span * 0.015, hi + span * headroom, default_hi)
}

// ---------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------

/// Formats an axis tick value compactly and deterministically.
fn fmt_tick(v: &f64) -> String {
    let v = *v;
    let a = v.abs();
    let s = if a >= 1e15 {
        format!("{:.1e}", v)
    } else if a >= 1e12 {
        format!("{}T", trim(format!("{:.2}", v / 1e12)))
    } else if a >= 1e9 {
        format!("{}G", trim(format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{:.0}", v)
    } else if a >= 10.0 {
        trim(format!("{:.1}", v))
    } else if a >= 0.01 || a == 0.0 {
        trim(format!("{:.2}", v))
    } else {
        format!("{:.1e}", v)
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// Tick label for count axes: integer ticks only (others left blank).
fn fmt_int_tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        fmt_tick(v)
    } else {
        String::new()
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    width: u32,
    points: Vec<(f64, f64)>,
}

struct Panel<'a> {
    caption: &'a str,
    y_desc: &'a str,
    x_desc: &'a str,
    series: Vec<Series<'a>>,
    /// Legend only when more than one series (or forced).
    legend: bool,
    /// y values are counts: label integer ticks only.
    integer_y: bool,
}

fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws one line chart with legend into `area`.
fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    p: &Panel,
    data: &Prepared,
    x_label_area: u32,
) -> Result<(), String> {
    let (x0, x1) = data.x_range();
    let (y0, y1) = y_range(p.series.iter().map(|s| s.points.as_slice()), 0.22, 1.0);

    let mut chart = ChartBuilder::on(area)
        .caption(p.caption, (FONT, 22))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(x_label_area)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(de)?;

    let mut mesh = chart.configure_mesh();
    mesh.x_desc(p.x_desc)
        .y_desc(p.y_desc)
        .x_labels(12)
        .y_labels(7)
        .x_label_formatter(&fmt_tick)
        .y_label_formatter(if p.integer_y { &fmt_int_tick } else { &fmt_tick })
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 17))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .max_light_lines(4);
    if x_label_area == 0 {
        mesh.x_desc("");
    }
    mesh.draw().map_err(de)?;

    if data.is_empty() {
        let style = TextStyle::from((FONT, 28).into_font()).color(&C_GREY).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        chart
            .draw_series(std::iter::once(Text::new("no data", ((x0 + x1) / 2.0, (y0 + y1) / 2.0), style)))
            .map_err(de)?;
        return Ok(());
    }

    // Lines are drawn as 1-px polylines stamped with a small square brush.
    // plotters' thick-line polygonizer produces long miter spikes (even
    // outside the plot area) on sharp zigzags, which downsampled data has.
    let base = area.get_base_pixel();
    for s in &p.series {
        let color = s.color;
        let w = s.width.max(1);
        let anno = chart.draw_series(std::iter::empty::<PathElement<(f64, f64)>>()).map_err(de)?;
        anno.label(s.name).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 22, y)], ShapeStyle::from(&color).stroke_width(w + 1))
        });
        let pa = chart.plotting_area();
        let mut px: Vec<(i32, i32)> = Vec::with_capacity(s.points.len());
        for pt in &s.points {
            let (x, y) = pa.map_coordinate(pt);
            let q = (x - base.0, y - base.1);
            if px.last() != Some(&q) {
                px.push(q);
            }
        }
        let thin = ShapeStyle::from(&color).stroke_width(1);
        if px.len() == 1 {
            // A single point draws no line; mark it.
            area.draw(&Circle::new(px[0], 4, ShapeStyle::from(&color).filled())).map_err(de)?;
            continue;
        }
        for dx in 0..w as i32 {
            for dy in 0..w as i32 {
                let shifted: Vec<(i32, i32)> = px.iter().map(|&(x, y)| (x + dx, y - dy)).collect();
                area.draw(&PathElement::new(shifted, thin)).map_err(de)?;
            }
        }
    }

    if p.legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .margin(8)
            .draw()
            .map_err(de)?;
    }
    Ok(())
}

fn draw_demand_capacity(root: &DrawingArea<BitMapBackend, Shift>, d: &Prepared) -> Result<(), String> {
    let panel = Panel {
        caption: "RAM demand, allocation and capacity",
        y_desc: "RAM (GB)",
        x_desc: d.unit.label(),
        series: vec![
            Series { name: "capacity (healthy workers)", color: C_GREY, width: 2, points: d.step(|b| b.capacity_gb) },
            Series { name: "demand (requested)", color: C_RED, width: 2, points: d.level(|b| b.demand_gb) },
            Series { name: "allocated (placed)", color: C_BLUE, width: 2, points: d.level(|b| b.allocated_gb) },
        ],
        legend: true,
        integer_y: false,
    };
    draw_panel(root, &panel, d, 45)
}

fn draw_queue_wait(root: &DrawingArea<BitMapBackend, Shift>, d: &Prepared) -> Result<(), String> {
    let (top, bottom) = root.split_vertically(HEIGHT as i32 * 45 / 100);
    let (wait_scale, wait_desc) = if d.peak_wait_s > 300.0 { (60.0, "p95 wait (min)") } else { (1.0, "p95 wait (s)") };
    let q = Panel {
        caption: "Placement queue length",
        y_desc: "queued servers",
        x_desc: "",
        series: vec![Series { name: "queue length", color: C_PURPLE, width: 2, points: d.step(|b| b.queue) }],
        legend: false,
        integer_y: true,
    };
    draw_panel(&top, &q, d, 28)?;
    let w = Panel {
        caption: "p95 wait of placements per sample interval",
        y_desc: wait_desc,
        x_desc: d.unit.label(),
        series: vec![Series {
            name: "p95 wait",
            color: C_ORANGE,
            width: 2,
            points: d.level(|b| b.wait_s / wait_scale),
        }],
        legend: false,
        integer_y: false,
    };
    draw_panel(&bottom, &w, d, 45)
}

fn draw_nodes(root: &DrawingArea<BitMapBackend, Shift>, d: &Prepared) -> Result<(), String> {
    let panel = Panel {
        caption: "Worker nodes",
        y_desc: "nodes",
        x_desc: d.unit.label(),
        series: vec![
            Series { name: "dedicated", color: C_BLUE, width: 2, points: d.step(|b| b.dedicated) },
            Series { name: "cloud (healthy/booting)", color: C_GREEN, width: 2, points: d.step(|b| b.cloud) },
            Series { name: "pending (provisioning)", color: C_ORANGE, width: 2, points: d.step(|b| b.pending) },
        ],
        legend: true,
        integer_y: true,
    };
    draw_panel(root, &panel, d, 45)
}

fn draw_cost(root: &DrawingArea<BitMapBackend, Shift>, d: &Prepared) -> Result<(), String> {
    let panel = Panel {
        caption: "Cumulative cost vs clairvoyant lower bound",
        y_desc: "cumulative cost (€)",
        x_desc: d.unit.label(),
        series: vec![
            Series { name: "cost (policy)", color: C_RED, width: 2, points: d.cumulative(|b| b.cost) },
            Series { name: "lower bound (clairvoyant)", color: C_GREY, width: 2, points: d.cumulative(|b| b.bound) },
        ],
        legend: true,
        integer_y: false,
    };
    draw_panel(root, &panel, d, 45)
}

// ---------------------------------------------------------------------------
// Sweep and scoreboard charts
// ---------------------------------------------------------------------------

/// Saves a chart drawn by `f` on a fresh white bitmap at `path`.
fn render_chart(
    path: &Path,
    f: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), ReportError> {
    ensure_font();
    let err = |message: String| ReportError::Plot { path: path.to_path_buf(), message };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT + 100)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let drawn = f(&root);
    root.present().map_err(|e| err(e.to_string()))?;
    drawn.map_err(err)
}

/// `pareto.png` of `conductor tune`: every configuration as a grey dot (cost €, p95 wait
/// s), the Pareto frontier in red, connected by rising cost.
pub fn write_pareto_png(
    path: &Path,
    caption: &str,
    all: &[(f64, f64)],
    frontier: &[(f64, f64)],
) -> Result<(), ReportError> {
    let all: Vec<(f64, f64)> = all.iter().map(|&(x, y)| (clean(x), clean(y))).collect();
    let frontier: Vec<(f64, f64)> = frontier.iter().map(|&(x, y)| (clean(x), clean(y))).collect();
    render_chart(path, |root| {
        let (x_lo, x_hi) =
            all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let (x_lo, x_hi) = if all.is_empty() { (0.0, 1.0) } else { (x_lo, x_hi) };
        let pad = ((x_hi - x_lo) * 0.05).max(x_hi.abs() * 0.01).max(0.01);
        let (x0, x1) = nondegenerate(x_lo - pad, x_hi + pad, 1.0);
        let (y0, y1) = y_range([all.as_slice()], 0.1, 1.0);
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 22))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(de)?;
        chart
            .configure_mesh()
            .x_desc("cost (€)")
            .y_desc("p95 wait (s)")
            .x_labels(10)
            .y_labels(8)
            .x_label_formatter(&fmt_tick)
            .y_label_formatter(&fmt_tick)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .max_light_lines(4)
            .draw()
            .map_err(de)?;
        chart
            .draw_series(all.iter().map(|&p| Circle::new(p, 4, ShapeStyle::from(&C_GREY.mix(0.6)).filled())))
            .map_err(de)?
            .label("configuration")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, ShapeStyle::from(&C_GREY).filled()));
        chart
            .draw_series(std::iter::once(PathElement::new(frontier.clone(), ShapeStyle::from(&C_RED).stroke_width(2))))
            .map_err(de)?
            .label("Pareto frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], ShapeStyle::from(&C_RED).stroke_width(3)));
        chart
            .draw_series(frontier.iter().map(|&p| Circle::new(p, 6, ShapeStyle::from(&C_RED).filled())))
            .map_err(de)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .margin(8)
            .draw()
            .map_err(de)
    })
}

/// `compare.png` of `conductor compare`: one group of bars per scenario, one bar per
/// policy (`values[scenario][policy]`; `None` draws no bar).
pub fn write_grouped_bars_png(
    path: &Path,
    caption: &str,
    groups: &[String],
    bars: &[String],
    values: &[Vec<Option<f64>>],
) -> Result<(), ReportError> {
    const PALETTE: [RGBColor; 10] = [
        C_BLUE,
        C_ORANGE,
        C_GREEN,
        C_RED,
        C_PURPLE,
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    render_chart(path, |root| {
        let n_bars = bars.len().max(1) as f64;
        let width = 0.8 / n_bars;
        let hi = values.iter().flatten().flatten().map(|&v| clean(v)).fold(0.0f64, f64::max);
        let (y0, y1) = nondegenerate(0.0, hi * 1.3, 1.0);
        let x1 = groups.len().max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 22))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x1, y0..y1)
            .map_err(de)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("cost / lower bound")
            .y_labels(8)
            .y_label_formatter(&fmt_tick)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(200, 200, 200))
            .max_light_lines(4)
            .draw()
            .map_err(de)?;
        for (b, name) in bars.iter().enumerate() {
            let color = PALETTE[b % PALETTE.len()];
            let rects: Vec<Rectangle<(f64, f64)>> = values
                .iter()
                .enumerate()
                .filter_map(|(g, row)| {
                    let v = clean(row.get(b).copied().flatten()?);
                    let x = g as f64 + 0.1 + b as f64 * width;
                    Some(Rectangle::new([(x, 0.0), (x + width * 0.9, v)], ShapeStyle::from(&color).filled()))
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(de)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], ShapeStyle::from(&color).filled()));
        }
        let style = TextStyle::from((FONT, 16).into_font()).color(&BLACK).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ));
        for (g, name) in groups.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(g as f64 + 0.5, y0));
            root.draw(&Text::new(cell(name), (x, y + 8), style.clone())).map_err(de)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .margin(8)
            .draw()
            .map_err(de)
    })
}

// ---------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------

/// Single-line text: newlines become spaces.
fn one_line(s: &str) -> String {
    s.split(['\r', '\n']).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Table cell: single line, pipes escaped.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

/// Number with fixed decimals, no "-0".
fn num(v: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, clean(v));
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

fn render_markdown(input: &ReportInput, d: &Prepared) -> String {
    let mut m = String::with_capacity(4096);
    let title = one_line(input.title);
    let _ = writeln!(m, "# Simulation report: {}\n", if title.is_empty() { "(untitled)" } else { &title });
    let _ = writeln!(m, "- Policy: {}", one_line(input.policy));
    let _ = writeln!(m, "- Seed: {}", input.seed);
    if d.is_empty() {
        let _ = writeln!(m, "- Samples: 0 (no data; plots are empty)");
    } else {
        let _ = writeln!(m, "- Samples: {} over {} {} of simulated time", d.n_samples, num(d.t_max, 2), d.unit.word());
    }

    m.push_str("\n## Summary\n\n");
    if input.summary_rows.is_empty() {
        m.push_str("_No summary values._\n");
    } else {
        m.push_str("| Metric | Value |\n| --- | --- |\n");
        for (k, v) in input.summary_rows {
            let _ = writeln!(m, "| {} | {} |", cell(k), cell(v));
        }
    }

    // One section per plot: image, one sentence describing it, and (if there
    // is data) the headline numbers.
    let empty = d.is_empty();
    let stats = |text: String| {
        if empty {
            " No samples were recorded.".to_string()
        } else {
            text
        }
    };

    let _ = writeln!(
        m,
        "\n## Demand and capacity\n\n![RAM demand, allocation and capacity over time]({DEMAND_CAPACITY_PNG})\n\n\
         RAM requested by servers (demand), RAM placed on nodes (allocated) and usable RAM of healthy worker nodes \
         (capacity), in GB over simulated time.{}",
        stats(format!(
            " Peaks: demand {} GB, allocated {} GB, capacity {} GB.",
            num(d.peak_demand_gb, 1),
            num(d.peak_allocated_gb, 1),
            num(d.peak_capacity_gb, 1)
        ))
    );

    let _ = writeln!(
        m,
        "\n## Queue and wait\n\n![Queue length and p95 placement wait over time]({QUEUE_WAIT_PNG})\n\n\
         Servers waiting for placement (top) and the p95 placement wait within each sample interval (bottom).{}",
        stats(format!(" Peaks: queue {} servers, p95 wait {} s.", d.peak_queue, num(d.peak_wait_s, 1)))
    );

    let _ = writeln!(
        m,
        "\n## Nodes\n\n![Dedicated, cloud and pending node counts over time]({NODES_PNG})\n\n\
         Dedicated nodes, rented cloud nodes (healthy or booting) and placeholders being provisioned (pending) \
         over simulated time.{}",
        stats(format!(" Peaks: {} dedicated, {} cloud, {} pending.", d.peak_dedicated, d.peak_cloud, d.peak_pending))
    );

    let ratio =
        if d.final_bound > 0.0 { format!(" (ratio {})", num(d.final_cost / d.final_bound, 3)) } else { String::new() };
    let _ = writeln!(
        m,
        "\n## Cost\n\n![Cumulative cost versus clairvoyant lower bound]({COST_PNG})\n\n\
         Cumulative cost of the policy against the cumulative clairvoyant lower bound, in €.{}",
        stats(format!(" At the end of the run: €{} vs €{}{}.", num(d.final_cost, 2), num(d.final_bound, 2), ratio))
    );
    if !input.notes.is_empty() {
        m.push_str("\n## Notes\n\n");
        for n in input.notes {
            let _ = writeln!(m, "- {}", one_line(n));
        }
    }
    m
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const PNG_SIG: &[u8] = &[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

    fn temp_dir(name: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "conductor-report-{}-{}-{}",
            name,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Removes a test output dir unless REPORT_KEEP is set (to inspect PNGs).
    fn cleanup(dir: &Path) {
        if std::env::var_os("REPORT_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Deterministic synthetic run: `n` samples every `step_ms`.
    pub(super) fn synthetic(n: usize, step_ms: u64) -> Vec<Sample> {
        let mut out = Vec::with_capacity(n);
        let (mut cost, mut bound) = (0.0, 0.0);
        let mut rng = 0x2545F4914F6CDD1Du64;
        for i in 0..n {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let noise = (rng % 1000) as f64 / 1000.0;
            let t_ms = i as u64 * step_ms;
            let h = t_ms as f64 / 3_600_000.0;
            let daily = (h / 24.0 * std::f64::consts::TAU).sin();
            let demand = (200_000.0 + 120_000.0 * daily + 20_000.0 * noise).max(0.0) as u64;
            let capacity = if demand > 250_000 { 340_000 } else { 262_144 };
            let allocated = demand.min(capacity - 8_000);
            let queue = if demand > allocated { ((demand - allocated) / 4096) as u32 } else { 0 };
            cost += 0.02 + 0.015 * daily.max(0.0);
            bound += 0.017 + 0.01 * daily.max(0.0);
            out.push(Sample {
                t_ms,
                demand_mb: demand,
                allocated_mb: allocated,
                capacity_mb: capacity,
                queue_len: queue,
                wait_p95_s: if queue > 0 { 30.0 + 90.0 * noise } else { 0.0 },
                nodes_dedicated: 4,
                nodes_cloud: if capacity > 262_144 { 2 } else { 0 },
                nodes_pending: if queue > 2 { 1 } else { 0 },
                cost_eur: cost,
                bound_eur: bound,
            });
        }
        out
    }

    fn rows() -> Vec<(String, String)> {
        vec![("total cost".to_string(), "€1234.56".to_string()), ("p95 wait".to_string(), "42 s | pipe".to_string())]
    }

    fn check_dir(dir: &Path) -> String {
        for f in [DEMAND_CAPACITY_PNG, QUEUE_WAIT_PNG, NODES_PNG, COST_PNG] {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(bytes.starts_with(PNG_SIG), "{f} is not a PNG");
            assert!(bytes.len() > 1024, "{f} too small: {} bytes", bytes.len());
        }
        let md = std::fs::read_to_string(dir.join(REPORT_MD)).unwrap();
        for f in [DEMAND_CAPACITY_PNG, QUEUE_WAIT_PNG, NODES_PNG, COST_PNG] {
            assert!(md.contains(&format!("]({f})")), "missing image link {f}");
        }
        md
    }

    fn run(name: &str, samples: &[Sample]) -> (PathBuf, String) {
        let dir = temp_dir(name);
        let rows = rows();
        let notes = vec!["first note".to_string(), "second\nnote".to_string()];
        let input = ReportInput {
            title: "test scenario",
            policy: "greedy",
            seed: 7,
            samples,
            summary_rows: &rows,
            notes: &notes,
        };
        let t = Instant::now();
        write_report(&dir, &input).unwrap();
        println!("{name}: write_report with {} samples took {:.1} ms", samples.len(), t.elapsed().as_secs_f64() * 1e3);
        let md = check_dir(&dir);
        assert!(md.contains("| total cost | €1234.56 |"));
        assert!(md.contains("| p95 wait | 42 s \\| pipe |"));
        assert!(md.contains("- first note"));
        assert!(md.contains("- second note"));
        (dir, md)
    }

    #[test]
    fn thirty_days() {
        // 30 days at 30 s interval = 86 400 samples.
        let s = synthetic(86_400, 30_000);
        let (dir, md) = run("30d", &s);
        assert!(md.contains("days of simulated time"));
        println!("30-day report written to {}", dir.display());
        cleanup(&dir);
    }

    #[test]
    fn hundred_k_samples_timing() {
        let s = synthetic(100_000, 30_000);
        let dir = temp_dir("100k");
        let input = ReportInput { title: "bench", policy: "p", seed: 1, samples: &s, summary_rows: &[], notes: &[] };
        write_report(&dir, &input).unwrap(); // warm-up (font registration, page cache)
        let t = Instant::now();
        write_report(&dir, &input).unwrap();
        println!("100k samples: write_report took {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        cleanup(&dir);
    }

    #[test]
    fn short_run_uses_hours() {
        let s = synthetic(2_000, 60_000); // ~33 h
        let (dir, md) = run("short", &s);
        assert!(md.contains(" h of simulated time"));
        cleanup(&dir);
    }

    #[test]
    fn empty_series() {
        let (dir, md) = run("empty", &[]);
        assert!(md.contains("Samples: 0"));
        cleanup(&dir);
    }

    #[test]
    fn one_sample() {
        let s = synthetic(1, 30_000);
        let (dir, _) = run("one", &s);
        cleanup(&dir);
    }

    #[test]
    fn all_zero_and_non_finite() {
        let zeros = vec![Sample::default(); 500];
        let (dir, _) = run("zeros", &zeros);
        cleanup(&dir);

        let mut bad = synthetic(1000, 30_000);
        for (i, s) in bad.iter_mut().enumerate() {
            s.wait_p95_s = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0, f64::MAX][i % 5];
            s.cost_eur = if i % 3 == 0 { f64::NAN } else { f64::MAX };
            s.bound_eur = f64::NEG_INFINITY;
            if i % 7 == 0 {
                s.demand_mb = u64::MAX;
                s.queue_len = u32::MAX;
            }
        }
        bad.swap(3, 900); // unsorted input
        let (dir, md) = run("nonfinite", &bad);
        assert!(!md.contains("NaN") && !md.contains("inf"));
        cleanup(&dir);
    }

    #[test]
    fn single_sample_at_zero_and_same_times() {
        let one = vec![Sample { demand_mb: 1024, capacity_mb: 2048, ..Sample::default() }];
        let (dir, _) = run("one-zero", &one);
        cleanup(&dir);
        let same: Vec<Sample> = (0..10).map(|i| Sample { t_ms: 5_000, queue_len: i, ..Sample::default() }).collect();
        let (dir, _) = run("same-t", &same);
        cleanup(&dir);
    }

    #[test]
    fn markdown_is_deterministic() {
        let s = synthetic(5_000, 30_000);
        let rows = rows();
        let notes = vec!["n".to_string()];
        let input = ReportInput { title: "t", policy: "p", seed: 3, samples: &s, summary_rows: &rows, notes: &notes };
        let a = render_markdown(&input, &Prepared::new(&s));
        let b = render_markdown(&input, &Prepared::new(&s));
        assert_eq!(a, b);
        let (d1, d2) = (temp_dir("det1"), temp_dir("det2"));
        write_report(&d1, &input).unwrap();
        write_report(&d2, &input).unwrap();
        assert_eq!(std::fs::read(d1.join(REPORT_MD)).unwrap(), std::fs::read(d2.join(REPORT_MD)).unwrap());
        cleanup(&d1);
        cleanup(&d2);
    }

    #[test]
    fn io_error_names_path() {
        let dir = std::env::temp_dir().join("conductor-report-does-not-exist-xyz/nested");
        let input = ReportInput { title: "t", policy: "p", seed: 0, samples: &[], summary_rows: &[], notes: &[] };
        let err = write_report(&dir, &input).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("conductor-report-does-not-exist-xyz"), "{msg}");
    }

    #[test]
    fn downsample_bounds() {
        let s = synthetic(100_000, 30_000);
        let d = Prepared::new(&s);
        assert!(d.buckets.len() <= MAX_POINTS);
        let true_max = s.iter().map(|x| x.demand_mb).max().unwrap();
        assert_eq!(d.peak_demand_gb, true_max as f64 / 1024.0);
        assert_eq!(d.final_cost, s.last().unwrap().cost_eur);
    }

    #[test]
    fn tick_format() {
        assert_eq!(fmt_tick(&0.0), "0");
        assert_eq!(fmt_tick(&-0.0), "0");
        assert_eq!(fmt_tick(&2.5), "2.5");
        assert_eq!(fmt_tick(&150.0), "150");
        assert_eq!(fmt_tick(&12_500.0), "12.5k");
        assert_eq!(fmt_tick(&3_000_000.0), "3M");
        assert_eq!(fmt_tick(&2.5e9), "2.5G");
        assert_eq!(fmt_tick(&1.2e13), "12T");
        assert!(fmt_tick(&1e300).len() <= 8);
    }
}
