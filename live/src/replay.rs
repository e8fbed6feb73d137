//! `conductor replay JOURNAL`: turn a live journal into a simulator scenario (the
//! owned hosts it registered and a trace of its start, stop and player inputs), so
//! that the simulator can say what another configuration or policy would have done
//! and cost on that day.

use crate::store::Store;
use conductor_core::io::Input;
use conductor_core::NodeKind;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes `trace.csv` and `scenario.toml` into `dir` and returns the scenario's path.
/// `start` is the calendar time of the first journaled input.
pub fn export(journal: &Path, dir: &Path) -> Result<PathBuf, String> {
    if !journal.exists() {
        return Err(format!("{}: no such file", journal.display()));
    }
    let store = Store::open(journal).map_err(|e| format!("{}: {e}", journal.display()))?;
    let rows = store.read_journal().map_err(|e| format!("{}: {e}", journal.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = |id: conductor_core::ServerId| {
        store.server_name(id).ok().flatten().unwrap_or_else(|| format!("server-{}", id.0))
    };
    let t0 = rows.first().map_or(0, |(t, _)| *t);
    let mut trace = String::from("at_s,server,action,ram_mb,plan,players\n");
    let mut nodes = String::new();
    let mut inputs = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    for (i, (at, input)) in rows.iter().enumerate() {
        let input = input.as_ref().map_err(|e| format!("{}: journal row {}: {e}", journal.display(), i + 1))?;
        let at_s = (at - t0) as f64 / 1000.0;
        match input {
            Input::StartRequested { server, ram_mb, plan, .. } => {
                let _ = writeln!(trace, "{at_s:.3},{},start,{ram_mb},{},", names(*server), plan.as_str());
                inputs += 1;
            }
            Input::StopRequested { server } => {
                let _ = writeln!(trace, "{at_s:.3},{},stop,,,", names(*server));
                inputs += 1;
            }
            Input::Players { server, count } => {
                let _ = writeln!(trace, "{at_s:.3},{},players,,,{count}", names(*server));
                inputs += 1;
            }
            // A host registered again after a restart is the same host.
            Input::NodeRegistered(spec) if spec.kind == NodeKind::Dedicated && seen.insert(spec.name.clone()) => {
                let _ = writeln!(
                    nodes,
                    "[[nodes]]\nid = {:?}\nram_mb = {}\nsystem = {}\nmonthly_eur = {}\n",
                    spec.name,
                    spec.total_ram_mb,
                    spec.system,
                    spec.hourly_eur * 730.0
                );
            }
            _ => {}
        }
    }
    if inputs == 0 {
        return Err(format!("{}: the journal holds no start, stop or player input", journal.display()));
    }
    let start = chrono_like(t0);
    let scenario = format!(
        "# Exported by `conductor replay` from {}\nname = \"replay\"\nseed = 1\nstart = \"{start}\"\ntrace = \"trace.csv\"\n\n{nodes}",
        journal.display()
    );
    std::fs::write(dir.join("trace.csv"), trace).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// RFC 3339 UTC of Unix milliseconds (civil-from-days, no time-zone database needed).
fn chrono_like(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_times() {
        assert_eq!(chrono_like(0), "1970-01-01T00:00:00Z");
        assert_eq!(chrono_like(1_767_657_600_000), "2026-01-06T00:00:00Z");
        assert_eq!(chrono_like(951_782_400_000 + 3_723_000), "2000-02-29T01:02:03Z");
    }
}
