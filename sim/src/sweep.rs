//! `conductor tune`: a parallel parameter sweep over the cartesian product of `--grid`
//! specs, each a `--set` override on top of the scenario. Runs are independent and
//! deterministic; results are collected and ordered by configuration index, so neither
//! the number of threads nor their scheduling reaches an output.

use crate::harness::{self, RunOptions};
use crate::metrics::Summary;
use crate::report;
use crate::scenario::{self, Loaded};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// More configurations than this is a typo, not a sweep.
pub const MAX_CONFIGS: usize = 100_000;

/// Wait targets (p95, seconds) that `report.md` names the cheapest configuration for.
pub const WAIT_TARGETS_S: [f64; 3] = [10.0, 30.0, 60.0];

/// The p95 target `best.toml` is chosen for.
pub const BEST_TARGET_S: f64 = 30.0;

/// One `--grid key=...`: the dotted key and its values as `--set` value texts.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub key: String,
    pub values: Vec<String>,
}

/// `key=from:to:step` (inclusive, numeric, formatted with the spec's own decimals) or
/// `key=a,b,c` (any `--set` values; one value without a comma is a list of one).
/// Errors name the spec.
pub fn parse_grid(spec: &str) -> Result<Grid, String> {
    let bad = |why: &str| format!("--grid {spec}: {why}");
    let (key, raw) = spec.split_once('=').ok_or_else(|| bad("expected dotted.key=from:to:step or dotted.key=a,b,c"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(bad("empty key"));
    }
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad(&format!("{key}: no values")));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let values = if !raw.contains(',') && parts.len() == 3 && parts[0].trim().parse::<f64>().is_ok() {
        range(parts[0].trim(), parts[1].trim(), parts[2].trim()).map_err(|e| bad(&format!("{key}: {e}")))?
    } else {
        let vals: Vec<String> = raw.split(',').map(|v| v.trim().to_string()).collect();
        if vals.iter().any(String::is_empty) {
            return Err(bad(&format!("{key}: empty value in the list")));
        }
        vals
    };
    Ok(Grid { key: key.to_string(), values })
}

/// A decimal number as an integer count of `10^-decimals`, with its decimals.
fn decimal(s: &str) -> Result<(i128, u32), String> {
    let bad = || format!("{s:?} is not a decimal number");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() + frac.len() > 30
    {
        return Err(bad());
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    Ok((if neg { -v } else { v }, frac.len() as u32))
}

/// Inclusive `from..=to` by `step`, exact in decimal: `0.1:0.3:0.1` is `0.1, 0.2, 0.3`.
fn range(from: &str, to: &str, step: &str) -> Result<Vec<String>, String> {
    let (f, df) = decimal(from)?;
    let (t, dt) = decimal(to)?;
    let (s, ds) = decimal(step)?;
    let d = df.max(dt).max(ds);
    let too_long = || format!("{from}:{to}:{step} has too many digits");
    let scale = |v: i128, dv: u32| 10i128.checked_pow(d - dv).and_then(|p| v.checked_mul(p)).ok_or_else(too_long);
    let (f, t, s) = (scale(f, df)?, scale(t, dt)?, scale(s, ds)?);
    if s <= 0 {
        return Err(format!("step {step} must be positive"));
    }
    if f > t {
        return Err(format!("from {from} is above to {to}"));
    }
    let n = t.checked_sub(f).ok_or_else(too_long)? / s + 1;
    if n > MAX_CONFIGS as i128 {
        return Err(format!("{n} values, more than {MAX_CONFIGS}"));
    }
    Ok((0..n).map(|i| fmt_fixed(f + i * s, d)).collect())
}

/// `v × 10^-d` with exactly `d` decimals (`d = 0`: an integer).
fn fmt_fixed(v: i128, d: u32) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    if d == 0 {
        return format!("{sign}{a}");
    }
    let p = 10u128.pow(d);
    format!("{sign}{}.{:0width$}", a / p, a % p, width = d as usize)
}

/// Every combination of the grids' values, the last grid varying fastest. Errors when a
/// key repeats or there are more than [`MAX_CONFIGS`].
pub fn configurations(grids: &[Grid]) -> Result<Vec<Vec<String>>, String> {
    for (i, g) in grids.iter().enumerate() {
        if grids[..i].iter().any(|o| o.key == g.key) {
            return Err(format!("--grid {}: the key is swept twice", g.key));
        }
    }
    let total = grids.iter().try_fold(1usize, |n, g| n.checked_mul(g.values.len()).filter(|&n| n <= MAX_CONFIGS));
    if total.is_none() {
        return Err(format!("the grids make more than {MAX_CONFIGS} configurations"));
    }
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for g in grids {
        out = out
            .iter()
            .flat_map(|prefix| g.values.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat()))
            .collect();
    }
    Ok(out)
}

/// One configuration's outcome.
#[derive(Clone, Debug)]
pub struct Point {
    pub index: usize,
    pub values: Vec<String>,
    pub summary: Summary,
}

/// What to sweep.
pub struct Sweep<'a> {
    pub scenario: &'a Path,
    pub sets: &'a [String],
    pub policy: Option<&'a str>,
    pub seed: Option<u64>,
    pub grids: &'a [Grid],
}

impl Sweep<'_> {
    fn sets_for(&self, values: &[String]) -> Vec<String> {
        let mut sets = self.sets.to_vec();
        sets.extend(self.grids.iter().zip(values).map(|(g, v)| format!("{}={v}", g.key)));
        sets
    }

    /// Loads every configuration first (bad values are input errors, before any run),
    /// then runs them on the current rayon pool. `tick` is called after each run.
    pub fn run(&self, tick: &(dyn Fn() + Sync)) -> Result<Vec<Point>, harness::SimError> {
        let input = harness::SimError::Input;
        let configs = configurations(self.grids).map_err(input)?;
        // best.toml carries the seed as a TOML integer: say so before any run, not after.
        if let Some(seed) = self.seed.filter(|&s| i64::try_from(s).is_err()) {
            return Err(input(format!("--seed {seed}: above {}, the largest a scenario file holds", i64::MAX)));
        }
        if let (Some(g), Some(_)) = (self.grids.iter().find(|g| g.key == "seed"), self.seed) {
            return Err(input(format!("--grid {}: --seed names the seed too; use one of them", g.key)));
        }
        let loaded: Vec<Loaded> = configs
            .iter()
            .map(|values| {
                scenario::load(self.scenario, &self.sets_for(values), self.policy).map_err(|e| {
                    harness::SimError::Input(format!("configuration {}: {e}", describe(self.grids, values)))
                })
            })
            .collect::<Result<_, _>>()?;
        // A grid whose values load the same scenario would label identical runs as
        // different configurations: --policy, or the policy itself, sets that key.
        let mut stride = configs.len();
        for g in self.grids {
            stride /= g.values.len();
            let same = |j: usize| {
                format!("{:?}", loaded[j * stride].scenario) == format!("{:?}", loaded[(j + 1) * stride].scenario)
            };
            if (0..g.values.len() - 1).any(same) {
                return Err(input(format!(
                    "--grid {}: two of its values load the same scenario (--policy, or the policy chosen, sets this key itself)",
                    g.key
                )));
            }
        }
        // Every run finishes; the first error in configuration order is reported, so
        // which one is reported does not depend on scheduling either.
        let results: Vec<Result<Point, harness::SimError>> = loaded
            .par_iter()
            .zip(configs.par_iter())
            .enumerate()
            .map(|(index, (l, values))| {
                let r = harness::run(l, RunOptions { seed: self.seed, ..Default::default() });
                tick();
                r.map(|r| Point { index, values: values.clone(), summary: r.summary })
            })
            .collect();
        results.into_iter().collect()
    }
}

/// `key=value, key=value`.
pub fn describe(grids: &[Grid], values: &[String]) -> String {
    grids.iter().zip(values).map(|(g, v)| format!("{}={v}", g.key)).collect::<Vec<_>>().join(", ")
}

/// Cheapest point with p95 wait ≤ `target_s`; ties: fewer timeouts, lower p95, lower index.
pub fn cheapest_within(points: &[Point], target_s: f64) -> Option<&Point> {
    points.iter().filter(|p| p.summary.wait_s.p95 <= target_s).min_by(|a, b| {
        let (sa, sb) = (&a.summary, &b.summary);
        sa.cost_eur
            .total
            .total_cmp(&sb.cost_eur.total)
            .then(sa.timed_out.cmp(&sb.timed_out))
            .then(sa.wait_s.p95.total_cmp(&sb.wait_s.p95))
            .then(a.index.cmp(&b.index))
    })
}

/// The configuration `best.toml` holds: the cheapest with p95 ≤ 30 s, else the lowest
/// p95 (ties: fewer timeouts, lower cost, lower index).
pub fn best(points: &[Point]) -> Option<&Point> {
    cheapest_within(points, BEST_TARGET_S).or_else(|| {
        points.iter().min_by(|a, b| {
            let (sa, sb) = (&a.summary, &b.summary);
            sa.wait_s
                .p95
                .total_cmp(&sb.wait_s.p95)
                .then(sa.timed_out.cmp(&sb.timed_out))
                .then(sa.cost_eur.total.total_cmp(&sb.cost_eur.total))
                .then(a.index.cmp(&b.index))
        })
    })
}

/// Indices (into `points`) of the cost / p95 Pareto frontier, by rising cost: points no
/// other point beats on both (equal points: the lowest index only).
pub fn pareto(points: &[Point]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    let key = |i: usize| (points[i].summary.cost_eur.total, points[i].summary.wait_s.p95);
    order.sort_by(|&a, &b| key(a).0.total_cmp(&key(b).0).then(key(a).1.total_cmp(&key(b).1)).then(a.cmp(&b)));
    let mut best_p95 = f64::INFINITY;
    let mut out = Vec::new();
    for i in order {
        let p95 = key(i).1;
        if p95 < best_p95 {
            best_p95 = p95;
            out.push(i);
        }
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `sweep.csv`: one row per configuration, in configuration order.
pub fn sweep_csv(grids: &[Grid], points: &[Point]) -> String {
    let mut out = String::from("config");
    for g in grids {
        out.push(',');
        out.push_str(&csv_cell(&g.key));
    }
    out.push_str(
        ",cost_eur,lower_bound_eur,cost_ratio,wait_p50_s,wait_p95_s,wait_p99_s,timed_out,joins_over_30s,\
         scale_ups,scale_downs,churn_per_hour,flaps\n",
    );
    for p in points {
        let s = &p.summary;
        let _ = write!(out, "{}", p.index);
        for v in &p.values {
            let _ = write!(out, ",{}", csv_cell(v));
        }
        let _ = writeln!(
            out,
            ",{},{},{},{},{},{},{},{},{},{},{},{}",
            s.cost_eur.total,
            s.lower_bound_eur,
            s.cost_ratio.map_or(String::new(), |r| r.to_string()),
            s.wait_s.p50,
            s.wait_s.p95,
            s.wait_s.p99,
            s.timed_out,
            s.joins_over_30s,
            s.scale_ups,
            s.scale_downs,
            s.churn_per_hour,
            s.flaps
        );
    }
    out
}

/// `best.toml`: the scenario file with `sets`, the policy, the seed and the chosen
/// configuration applied; a trace path is made absolute (it was relative to the
/// scenario file) and an unnamed scenario keeps its file's name.
pub fn best_toml(sweep: &Sweep, loaded_name: &str, point: &Point) -> Result<String, String> {
    let path = sweep.scenario;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    for s in sweep.sets_for(&point.values) {
        scenario::apply_set(&mut table, &s).map_err(|e| format!("--set {s}: {e}"))?;
    }
    if let Some(p) = sweep.policy {
        table.insert("policy".into(), toml::Value::String(p.into()));
    }
    if let Some(seed) = sweep.seed {
        let seed = i64::try_from(seed).map_err(|_| format!("--seed {seed} does not fit a TOML integer"))?;
        table.insert("seed".into(), toml::Value::Integer(seed));
    }
    table.insert("name".into(), toml::Value::String(loaded_name.into()));
    if let Some(toml::Value::String(trace)) = table.get("trace") {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let abs: PathBuf = dir.join(trace);
        let abs = std::fs::canonicalize(&abs).unwrap_or(abs);
        table.insert("trace".into(), toml::Value::String(abs.display().to_string()));
    }
    let body = toml::to_string(&table).map_err(|e| format!("best.toml: {e}"))?;
    let mut out = format!(
        "# conductor tune: the chosen configuration of {} (configuration {}: {}).\n",
        path.display(),
        point.index,
        describe(sweep.grids, &point.values)
    );
    out.push_str(&body);
    Ok(out)
}

/// The value every point shares, or "per configuration" when the grid varies it.
fn common(points: &[Point], f: impl Fn(&Point) -> String) -> String {
    match points.split_first() {
        None => "-".into(),
        Some((first, rest)) => {
            let v = f(first);
            if rest.iter().all(|p| f(p) == v) {
                v
            } else {
                "per configuration".into()
            }
        }
    }
}

/// `report.md` of a sweep.
pub fn report_md(sweep: &Sweep, name: &str, points: &[Point]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Sweep: {name}\n");
    let _ = writeln!(
        md,
        "{} configurations of `{}`, policy `{}`, seed {}. Grids: {}.\n",
        points.len(),
        sweep.scenario.display(),
        common(points, |p| p.summary.policy.clone()),
        common(points, |p| p.summary.seed.to_string()),
        sweep.grids.iter().map(|g| format!("`{}` ({})", g.key, g.values.join(", "))).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(md, "## Cheapest configuration per wait target\n");
    let _ = writeln!(md, "| p95 wait target | configuration | cost € | cost / bound | p95 s | p99 s | timed out |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    for t in WAIT_TARGETS_S {
        match cheapest_within(points, t) {
            Some(p) => {
                let _ = writeln!(md, "| ≤ {t} s | {} |", row(sweep.grids, p));
            }
            None => {
                let _ = writeln!(md, "| ≤ {t} s | none | | | | | |");
            }
        }
    }
    let _ = writeln!(
        md,
        "\nCheapest by total cost; ties go to fewer timeouts, then the lower p95, then the lower configuration \
         number. `best.toml` holds the cheapest with p95 ≤ {BEST_TARGET_S} s, else the lowest p95."
    );
    if let Some(b) = best(points) {
        let _ = writeln!(md, "\nbest.toml: configuration {} ({}).", b.index, describe(sweep.grids, &b.values));
    }
    let _ = writeln!(md, "\n## Pareto frontier (cost vs p95 wait)\n\n![pareto](pareto.png)\n");
    let _ = writeln!(md, "| configuration | cost € | cost / bound | p95 s | p99 s | timed out |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for i in pareto(points) {
        let _ = writeln!(md, "| {} |", row(sweep.grids, &points[i]));
    }
    let _ = writeln!(md, "\nEvery configuration is in `sweep.csv`.");
    md
}

fn row(grids: &[Grid], p: &Point) -> String {
    let s = &p.summary;
    format!(
        "{} ({}) | {:.2} | {} | {} | {} | {}",
        p.index,
        describe(grids, &p.values),
        s.cost_eur.total,
        s.cost_ratio.map_or("n/a".into(), |r| format!("{r:.3}")),
        s.wait_s.p95,
        s.wait_s.p99,
        s.timed_out
    )
}

/// Writes `sweep.csv`, `pareto.png`, `report.md` and `best.toml` into `dir`.
pub fn write_outputs(dir: &Path, sweep: &Sweep, points: &[Point]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("sweep.csv", &sweep_csv(sweep.grids, points))?;
    let name = points.first().map_or_else(String::new, |p| p.summary.scenario.clone());
    write("report.md", &report_md(sweep, &name, points))?;
    if let Some(b) = best(points) {
        write("best.toml", &best_toml(sweep, &name, b)?)?;
    }
    let all: Vec<(f64, f64)> = points.iter().map(|p| (p.summary.cost_eur.total, p.summary.wait_s.p95)).collect();
    let front: Vec<(f64, f64)> = pareto(points).into_iter().map(|i| all[i]).collect();
    report::write_pareto_png(&dir.join("pareto.png"), &format!("{name}: cost vs p95 wait"), &all, &front)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_exact_decimals() {
        assert_eq!(parse_grid("a.b=0.1:0.3:0.1").unwrap().values, ["0.1", "0.2", "0.3"]);
        assert_eq!(parse_grid("a=60:90:10").unwrap().values, ["60", "70", "80", "90"]);
        assert_eq!(parse_grid("a=1:2:0.5").unwrap().values, ["1.0", "1.5", "2.0"]);
        assert_eq!(parse_grid("a=-1:1:1").unwrap().values, ["-1", "0", "1"]);
        assert_eq!(parse_grid("a=5:5:1").unwrap().values, ["5"]);
        assert_eq!(parse_grid("a=0:10:3").unwrap().values, ["0", "3", "6", "9"]);
        assert_eq!(parse_grid("p=seed,reactive").unwrap().values, ["seed", "reactive"]);
        assert_eq!(parse_grid("start=2026-01-05T00:00:00Z").unwrap().values, ["2026-01-05T00:00:00Z"]);
    }

    #[test]
    fn bad_grids_name_the_spec() {
        for (spec, why) in [
            ("foo", "--grid foo: expected"),
            ("x=1:0:1", "--grid x=1:0:1: x: from 1 is above to 0"),
            ("x=0:1:0", "--grid x=0:1:0: x: step 0 must be positive"),
            ("x=0:1:-1", "step -1 must be positive"),
            ("x=0:b:1", "\"b\" is not a decimal number"),
            ("=1,2", "empty key"),
            ("x=", "x: no values"),
            ("x=1,,2", "x: empty value"),
            ("x=0:1000000:1", "more than"),
            // Thirty digits each side of the point overflow no integer.
            (
                "x=100000000000000000000000000000:100000000000000000000000000000:0.00000000000000000000000000001",
                "too many digits",
            ),
            ("x=-99999999999999999999999999999.9:99999999999999999999999999999.9:0.1", "more than"),
        ] {
            let e = parse_grid(spec).unwrap_err();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn configurations_are_the_product_last_fastest() {
        let g = |k: &str, v: &[&str]| Grid { key: k.into(), values: v.iter().map(|s| s.to_string()).collect() };
        let c = configurations(&[g("a", &["1", "2"]), g("b", &["x", "y", "z"])]).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[0], ["1", "x"]);
        assert_eq!(c[1], ["1", "y"]);
        assert_eq!(c[5], ["2", "z"]);
        assert!(configurations(&[g("a", &["1"]), g("a", &["2"])]).unwrap_err().contains("--grid a"));
        assert_eq!(configurations(&[]).unwrap(), vec![Vec::<String>::new()]);
    }

    fn pt(index: usize, cost: f64, p95: f64, timed_out: u64) -> Point {
        let mut summary = Summary::default();
        summary.cost_eur.total = cost;
        summary.wait_s.p95 = p95;
        summary.timed_out = timed_out;
        Point { index, values: vec![index.to_string()], summary }
    }

    #[test]
    fn cheapest_per_target_with_ties_and_none() {
        let pts = [pt(0, 10.0, 45.0, 2), pt(1, 12.0, 20.0, 1), pt(2, 12.0, 25.0, 0), pt(3, 20.0, 5.0, 0)];
        assert_eq!(cheapest_within(&pts, 60.0).unwrap().index, 0);
        assert_eq!(cheapest_within(&pts, 30.0).unwrap().index, 2, "equal cost: fewer timeouts first");
        assert_eq!(cheapest_within(&pts, 10.0).unwrap().index, 3);
        assert!(cheapest_within(&pts, 4.0).is_none());
        assert_eq!(best(&pts).unwrap().index, 2);
        let slow = [pt(0, 10.0, 90.0, 0), pt(1, 5.0, 80.0, 0)];
        assert_eq!(best(&slow).unwrap().index, 1, "no p95 <= 30 s: the lowest p95");
        assert!(best(&[]).is_none());
    }

    #[test]
    fn pareto_frontier_by_rising_cost() {
        let pts = [pt(0, 10.0, 45.0, 0), pt(1, 12.0, 20.0, 0), pt(2, 12.0, 25.0, 0), pt(3, 20.0, 5.0, 0)];
        assert_eq!(pareto(&pts), [0, 1, 3]);
        let dup = [pt(0, 1.0, 1.0, 0), pt(1, 1.0, 1.0, 0), pt(2, 2.0, 1.0, 0)];
        assert_eq!(pareto(&dup), [0]);
    }
}
