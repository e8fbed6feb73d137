//! Seeded synthetic load-trace generator.
//!
//! Writes a trace in the format of [`crate::trace`] that looks like a small
//! game-server hoster's week: quiet mornings, demand rising from 15:00, an
//! evening peak from 19:00 to 23:00, a steep drop after midnight, and busier
//! Friday and Saturday evenings. The same [`GenParams`] and seed always give
//! byte-identical output.
//!
//! # Model
//!
//! Every customer owns one server (`s{index}`) of one memory tier and
//! follows one persona, chosen once per customer:
//!
//! * **casual** (2/4/8 GB): plays on some days, starting at times drawn from
//!   the daily demand curve; sessions of 1–2 h (2/4 GB) or 2–4 h (8 GB),
//!   sometimes a second session later the same evening.
//! * **Feierabend-Team** (2/4/8 GB): 3–5 friends with 2–3 fixed weekday
//!   evenings a week, starting 19:00–20:30 for about 3 h.
//! * **mod tester** (mostly 2/4 GB): several 20–40 min sessions in an
//!   afternoon/evening, 1–2 players.
//! * **weekend player** (2/4/8 GB): long Saturday/Sunday sessions (4–8 h from
//!   late morning), sometimes Friday evening, rarely on weekdays.
//! * **long runner** (16/32 GB): 8–12 h sessions starting 10:00–16:00.
//! * **always on** (`always_on_fraction_large` of 16/32 GB): started in the
//!   first five minutes, never stopped.
//!
//! The day of a persona runs from 06:00 to 06:00, so a session started after
//! midnight belongs to the evening before (that is what carries the
//! Friday/Saturday boost into the night).
//!
//! **Calibration.** Except for always-on servers, whether a customer plays on
//! a given day is a coin flip with probability `min(0.95, alpha * base)`,
//! where `base` comes from the persona (and the demand curve's weight of
//! that day). Everything else about a day is drawn independently of
//! `alpha`, so the generator first draws every customer-day once and then
//! searches the one scale `alpha` for which the mean number of running
//! servers on Monday–Thursday evenings (20:00–22:00) is `peak_concurrent`.
//! The weekend boost works the same way: every 2/4/8 GB customer has an
//! extra Friday and Saturday evening session (18:00–22:00 start) played
//! with probability `min(0.95, beta * weight)`, and `beta` is searched so
//! that Friday/Saturday evenings average `weekend_boost` times the weekday
//! evenings. If a target cannot be reached (too few customers, the
//! always-on servers alone exceed it, or a boost below what the personas
//! already give) the closest reachable trace is produced.
//!
//! **Randomness.** All randomness comes from `ChaCha8Rng::seed_from_u64` on
//! sub-seeds derived from `seed`, one stream per concern and unit: customer
//! setup per customer, sessions per customer-day, players per session, flash
//! crowds per crowd. So turning `players` off, adding a flash crowd or
//! adding customers leaves the other customers' sessions as they were
//! (except through the `alpha` rescaling when the target changes).
//!
//! **Flash crowds.** Each [`FlashCrowd`] adds `starts` session starts spread
//! uniformly over `[at_s, at_s + within_s)`. Each start goes to an existing
//! customer who is idle for the whole session if one is found in a few
//! random tries, otherwise to a new customer (ids continue after
//! `customers`). Flash sessions last as long as the tier's casual sessions
//! (1–2 h, 2–4 h, 8–12 h).
//!
//! **Rows.** Start rows carry `ram_mb` and `plan` (2/4 GB pay-per-play,
//! 8 GB balanced, 16/32 GB reserved or balanced, half each per customer).
//! With `players` on, a players row follows each start by 1–2 min, the count
//! changes a few times during the session, and about half the sessions show
//! 0 players 2–10 min before their stop, so idle-shutdown logic has
//! something to act on. Always-on servers get a players row every 1–3 h
//! that follows the demand curve (0 at night is common). Rows at or after
//! the end of the trace are not written: a server still running at the end
//! has no stop row.

use std::io::{self, Write};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Memory of each tier in MB, smallest first; index into `tier_mix`.
pub const TIER_MB: [u32; 5] = [2048, 4096, 8192, 16384, 32768];
/// Most players a server of each tier shows.
pub const TIER_PLAYERS_MAX: [u32; 5] = [10, 20, 40, 80, 150];

/// A burst of extra server starts, e.g. after a streamer promoted the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlashCrowd {
    /// Start of the window, seconds from trace start.
    pub at_s: u64,
    /// Number of extra starts.
    pub starts: u32,
    /// Length of the window in seconds (0: all at `at_s`).
    pub within_s: u64,
}

/// What trace to generate. See the module docs for the model.
#[derive(Clone, Debug, PartialEq)]
pub struct GenParams {
    /// Trace length in days.
    pub days: u32,
    /// Weekday of t = 0 (00:00): 0 = Monday … 6 = Sunday.
    pub start_weekday: u8,
    /// Number of customers, each owning one server.
    pub customers: u32,
    /// Target mean number of running servers on a normal weekday evening
    /// (Monday–Thursday, 20:00–22:00).
    pub peak_concurrent: u32,
    /// Relative weights of the 2/4/8/16/32 GB tiers.
    pub tier_mix: [u32; 5],
    /// Fraction of 16/32 GB servers that run around the clock.
    pub always_on_fraction_large: f64,
    /// Extra bursts of starts.
    pub flash_crowds: Vec<FlashCrowd>,
    /// Demand multiplier for Friday and Saturday evenings (and the night
    /// after them).
    pub weekend_boost: f64,
    /// Whether to write `players` rows.
    pub players: bool,
}

impl Default for GenParams {
    /// A small hoster's week.
    fn default() -> Self {
        GenParams {
            days: 7,
            start_weekday: 0,
            customers: 200,
            peak_concurrent: 40,
            tier_mix: [30, 40, 20, 8, 2],
            always_on_fraction_large: 0.3,
            flash_crowds: Vec::new(),
            weekend_boost: 1.6,
            players: true,
        }
    }
}

/// Counts of what [`generate`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Data rows (without the header).
    pub rows: u64,
    /// `start` rows.
    pub starts: u64,
    /// `stop` rows.
    pub stops: u64,
    /// `players` rows.
    pub players_rows: u64,
}

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// Marks a session that never ends.
const NEVER: u64 = u64::MAX;
/// Minimum idle time between two sessions of one server.
const GAP: u64 = 2 * MIN;
/// A persona's day starts at this hour, so late-night play belongs to the
/// evening before.
const DAY_START_HOUR: u64 = 6;
/// Cap on the daily play probability, so nobody is entirely predictable.
const PLAY_P_MAX: f64 = 0.95;
/// A flash crowd is hundreds or thousands of starts; a million is far beyond any.
const FLASH_STARTS_MAX: u32 = 1_000_000;
/// Each customer costs a few words of memory up front: ten million is about 200 MB.
pub const CUSTOMERS_MAX: u32 = 10_000_000;
/// Largest number of days, keeping every time within the reader's limit.
const DAYS_MAX: u32 = (crate::trace::AT_S_MAX / 86_400) as u32;

/// Relative rate of casual session starts per clock hour (00:00 first):
/// low 03:00–10:00, rising from 15:00, highest 19:00–21:00, falling steeply
/// after midnight. Starts lead the running count by about a session length.
const START_CURVE: [f64; 24] = [
    0.30, 0.14, 0.07, 0.04, 0.03, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.13, //
    0.16, 0.18, 0.20, 0.28, 0.42, 0.60, 0.80, 1.00, 1.00, 0.85, 0.65, 0.45,
];
/// Relative number of players online per clock hour, for always-on servers.
const PLAYER_CURVE: [f64; 24] = [
    0.45, 0.25, 0.10, 0.05, 0.03, 0.03, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15, //
    0.20, 0.25, 0.30, 0.35, 0.45, 0.60, 0.75, 0.90, 1.00, 1.00, 0.90, 0.70,
];

// Sub-stream tags, so each concern draws from its own ChaCha stream.
const STREAM_SETUP: u64 = 0x5E7_0001;
const STREAM_DAYS: u64 = 0xDA75_0002;
const STREAM_PLAYERS: u64 = 0x91A7_0003;
const STREAM_FLASH: u64 = 0xF1A5_0004;
const STREAM_WEEKEND: u64 = 0x3EE6_0005;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persona {
    Casual,
    Team,
    ModTester,
    Weekender,
    LongRunner,
    AlwaysOn,
}

#[derive(Clone, Copy, Debug)]
struct Customer {
    tier: u8,
    /// 0 pay-per-play, 1 balanced, 2 reserved.
    plan: u8,
    persona: Persona,
    /// Casual customers' activity relative to the average (mean 1).
    weight: f64,
    /// Team evenings: bit `d` set for weekday `d` (0 = Monday).
    team_days: u8,
}

/// A session that will happen if its customer plays on its day.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    customer: u32,
    /// Uniform draw of the day; the day is played if `u < p(alpha)`.
    u: f64,
    /// Play probability at scale 1 (negative: always plays).
    base_p: f64,
    /// An extra Friday/Saturday evening session (scaled by `beta`, not
    /// `alpha`).
    weekend_extra: bool,
    start: u64,
    end: u64,
}

#[derive(Clone, Copy, Debug)]
struct Session {
    customer: u32,
    start: u64,
    end: u64,
}

/// One output row, 16 bytes: millions of them are sorted in memory.
#[derive(Clone, Copy, Debug)]
struct GenRow {
    at_ms: u64,
    server: u32,
    /// Kind in the top two bits; below it tier | plan << 4 for starts, the
    /// count for players rows.
    data: u32,
}

const KIND_START: u32 = 0;
const KIND_STOP: u32 = 1;
const KIND_PLAYERS: u32 = 2;
const KIND_SHIFT: u32 = 30;

/// SplitMix64 finaliser: turns structured inputs into well-spread seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG for one unit (`a`, `b`) of one concern (`stream`).
fn rng_for(seed: u64, stream: u64, a: u64, b: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed ^ stream) ^ a) ^ b))
}

/// Uniform in `[lo, hi)` (or `lo` when the range is empty).
fn between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    if hi > lo {
        rng.random_range(lo..hi)
    } else {
        lo
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

/// Index drawn from non-negative integer weights with a positive sum.
fn pick_weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    let mut x = rng.random_range(0..total);
    for (i, &w) in weights.iter().enumerate() {
        if x < w as u64 {
            return i;
        }
        x -= w as u64;
    }
    weights.len() - 1
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

/// The parameters' checks, also run when a scenario is loaded (bad input, not a failed run).
pub fn validate(p: &GenParams) -> io::Result<()> {
    if p.days > DAYS_MAX {
        return Err(invalid("days: too many"));
    }
    if p.start_weekday > 6 {
        return Err(invalid("start_weekday: must be 0 (Monday) ..= 6 (Sunday)"));
    }
    if p.tier_mix.iter().all(|&w| w == 0) {
        return Err(invalid("tier_mix: at least one weight must be positive"));
    }
    if !(0.0..=1.0).contains(&p.always_on_fraction_large) {
        return Err(invalid("always_on_fraction_large: must be within 0..=1"));
    }
    if !(p.weekend_boost.is_finite() && p.weekend_boost >= 0.0) {
        return Err(invalid("weekend_boost: must be a finite non-negative number"));
    }
    if p.customers > CUSTOMERS_MAX {
        return Err(invalid(&format!("customers: {} is more than {CUSTOMERS_MAX}", p.customers)));
    }
    if let Some(f) = p.flash_crowds.iter().find(|f| f.at_s >= u64::from(p.days) * 86_400) {
        return Err(invalid(&format!("flash_crowds: at_s {} is after the trace's {} day(s)", f.at_s, p.days)));
    }
    if let Some(f) = p.flash_crowds.iter().find(|f| f.starts > FLASH_STARTS_MAX) {
        return Err(invalid(&format!(
            "flash_crowds: {} starts at {} s, more than {FLASH_STARTS_MAX}",
            f.starts, f.at_s
        )));
    }
    Ok(())
}

/// Casual start curve of one persona-day (24 hours from 06:00) by weekday,
/// with the Friday/Saturday evening boost applied.
struct DayCurves {
    /// Cumulative weights per weekday, hour 0 = 06:00.
    cumulative: [[f64; 24]; 7],
    /// Total weight of each weekday relative to a Monday.
    relative_mass: [f64; 7],
}

impl DayCurves {
    fn new(weekend_boost: f64) -> Self {
        let mut cumulative = [[0.0; 24]; 7];
        let mut mass = [0.0; 7];
        for (dow, cum) in cumulative.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (h, c) in cum.iter_mut().enumerate() {
                let clock = (h + DAY_START_HOUR as usize) % 24;
                let evening = !(3..17).contains(&clock);
                let boost = if (dow == 4 || dow == 5) && evening {
                    if clock == 17 {
                        1.0 + (weekend_boost - 1.0) * 0.5
                    } else {
                        weekend_boost
                    }
                } else {
                    1.0
                };
                acc += START_CURVE[clock] * boost;
                *c = acc;
            }
            mass[dow] = acc;
        }
        let monday = mass[0];
        let relative_mass = mass.map(|m| if monday > 0.0 { m / monday } else { 0.0 });
        DayCurves { cumulative, relative_mass }
    }

    /// Offset from the persona-day's start (06:00) of a casual start time.
    fn sample_offset(&self, rng: &mut ChaCha8Rng, dow: usize) -> u64 {
        let cum = &self.cumulative[dow];
        let total = cum[23];
        let x = unit(rng) * total;
        let hour = cum.iter().position(|&c| x < c).unwrap_or(23) as u64;
        hour * HOUR + between(rng, 0, HOUR)
    }
}

/// Writes a synthetic trace for `p` and `seed` to `out`.
///
/// Output is byte-identical for equal inputs. Fails with `InvalidInput` on
/// nonsensical parameters, or with the writer's error.
pub fn generate<W: Write>(p: &GenParams, seed: u64, out: W) -> io::Result<GenStats> {
    validate(p)?;
    let end = p.days as u64 * DAY;
    let mut customers: Vec<Customer> = (0..p.customers).map(|i| setup_customer(p, seed, i)).collect();
    let curves = DayCurves::new(p.weekend_boost);

    let candidates = draw_candidates(p, seed, &customers, &curves, end);
    let sessions = calibrate(p, &candidates, end);
    let (sessions, flash) = add_flash_crowds(p, seed, &mut customers, sessions, end);

    let mut rows: Vec<GenRow> = Vec::with_capacity((sessions.len() + flash.len()) * if p.players { 5 } else { 2 });
    for s in sessions.iter().chain(flash.iter()) {
        emit_session(p, seed, &customers[s.customer as usize], s, end, &mut rows);
    }
    // Stable: rows at the same millisecond keep their generation order.
    rows.sort_by_key(|r| r.at_ms);
    write_rows(&rows, out)
}

fn setup_customer(p: &GenParams, seed: u64, index: u32) -> Customer {
    let mut rng = rng_for(seed, STREAM_SETUP, index as u64, 0);
    let tier = pick_weighted(&mut rng, &p.tier_mix) as u8;
    let u = unit(&mut rng);
    let large = tier >= 3;
    let persona = if large {
        if unit(&mut rng) < p.always_on_fraction_large {
            Persona::AlwaysOn
        } else {
            Persona::LongRunner
        }
    } else {
        // (mod tester, weekend player, team) shares by tier; the rest casual.
        let (m, w, t) = match tier {
            0 => (0.15, 0.15, 0.10),
            1 => (0.08, 0.15, 0.20),
            _ => (0.03, 0.15, 0.25),
        };
        if u < m {
            Persona::ModTester
        } else if u < m + w {
            Persona::Weekender
        } else if u < m + w + t {
            Persona::Team
        } else {
            Persona::Casual
        }
    };
    let plan = match tier {
        0 | 1 => 0,
        2 => 1,
        _ => {
            if unit(&mut rng) < 0.5 {
                2
            } else {
                1
            }
        }
    };
    let weight = 0.3 + 1.4 * unit(&mut rng);
    // 2 or 3 distinct evenings among Monday..Friday.
    let evenings = 2 + rng.random_range(0..2u32);
    let mut team_days = 0u8;
    while team_days.count_ones() < evenings {
        team_days |= 1 << rng.random_range(0..5u32);
    }
    Customer { tier, plan, persona, weight, team_days }
}

/// Session length of a casual (or flash-crowd) session by tier.
fn casual_length(rng: &mut ChaCha8Rng, tier: u8) -> u64 {
    match tier {
        0 | 1 => between(rng, HOUR, 2 * HOUR),
        2 => between(rng, 2 * HOUR, 4 * HOUR),
        _ => between(rng, 8 * HOUR, 12 * HOUR),
    }
}

/// Draws every customer-day's would-be sessions once, independent of the
/// calibration scale, in customer order and time order within a customer.
fn draw_candidates(p: &GenParams, seed: u64, customers: &[Customer], curves: &DayCurves, end: u64) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (i, c) in customers.iter().enumerate() {
        let ci = i as u32;
        if c.persona == Persona::AlwaysOn {
            let mut rng = rng_for(seed, STREAM_DAYS, i as u64, u64::MAX);
            let start = between(&mut rng, 0, 5 * MIN);
            if start < end {
                out.push(Candidate { customer: ci, u: 0.0, base_p: -1.0, weekend_extra: false, start, end: NEVER });
            }
            continue;
        }
        let first = out.len();
        // Day -1 holds the first night's (00:00-06:00) sessions.
        for d in -1..p.days as i64 {
            let day_start = d * DAY as i64 + (DAY_START_HOUR * HOUR) as i64;
            if day_start >= end as i64 {
                break;
            }
            let dow = (p.start_weekday as i64 + d).rem_euclid(7) as usize;
            let mut rng = rng_for(seed, STREAM_DAYS, i as u64, (d + 1) as u64);
            let u = unit(&mut rng);
            let mut push = |offset: u64, len: u64, base_p: f64| {
                let start = day_start + offset as i64;
                if start >= 0 && (start as u64) < end {
                    let start = start as u64;
                    out.push(Candidate { customer: ci, u, base_p, weekend_extra: false, start, end: start + len });
                }
            };
            let at = |h: u64| (h - DAY_START_HOUR) * HOUR;
            match c.persona {
                Persona::Casual => {
                    let base_p = 0.3 * c.weight * curves.relative_mass[dow];
                    let off = curves.sample_offset(&mut rng, dow);
                    let len = casual_length(&mut rng, c.tier);
                    push(off, len, base_p);
                    if unit(&mut rng) < 0.25 {
                        let off2 = off + len + between(&mut rng, 15 * MIN, 90 * MIN);
                        let len2 = casual_length(&mut rng, c.tier);
                        if off2 < DAY {
                            push(off2, len2, base_p);
                        }
                    }
                }
                Persona::Team => {
                    if c.team_days & (1 << dow) != 0 {
                        let off = at(19) + between(&mut rng, 0, 90 * MIN);
                        push(off, between(&mut rng, 150 * MIN, 210 * MIN), 0.85);
                    }
                }
                Persona::ModTester => {
                    let n = rng.random_range(2..=5u32);
                    let mut off = at(14) + between(&mut rng, 0, 6 * HOUR);
                    for _ in 0..n {
                        let len = between(&mut rng, 20 * MIN, 40 * MIN);
                        if off + len > DAY {
                            break;
                        }
                        push(off, len, 0.4);
                        off += len + between(&mut rng, 5 * MIN, 45 * MIN);
                    }
                }
                Persona::Weekender => match dow {
                    5 | 6 => {
                        let off = at(10) + between(&mut rng, 0, 5 * HOUR);
                        push(off, between(&mut rng, 4 * HOUR, 8 * HOUR), 0.8);
                    }
                    4 => {
                        let off = at(19) + between(&mut rng, 0, 2 * HOUR);
                        push(off, between(&mut rng, 2 * HOUR, 4 * HOUR), 0.35);
                    }
                    _ => {
                        let off = curves.sample_offset(&mut rng, dow);
                        push(off, between(&mut rng, HOUR, 2 * HOUR), 0.05);
                    }
                },
                Persona::LongRunner => {
                    let base_p = if dow >= 5 { 0.8 } else { 0.55 };
                    let off = at(10) + between(&mut rng, 0, 6 * HOUR);
                    push(off, between(&mut rng, 8 * HOUR, 12 * HOUR), base_p);
                }
                Persona::AlwaysOn => unreachable!("handled above"),
            }
        }
        // Extra Friday/Saturday evening sessions carry the weekend boost
        // for every persona (teams and weekend players included), drawn
        // from their own stream so the knob reshuffles nothing else.
        if c.tier < 3 {
            for d in 0..p.days as u64 {
                let dow = (p.start_weekday as u64 + d) % 7;
                if dow != 4 && dow != 5 {
                    continue;
                }
                let mut rng = rng_for(seed, STREAM_WEEKEND, i as u64, d);
                let u = unit(&mut rng);
                let start = d * DAY + 18 * HOUR + between(&mut rng, 0, 4 * HOUR);
                let len = casual_length(&mut rng, c.tier);
                if start < end {
                    out.push(Candidate {
                        customer: ci,
                        u,
                        base_p: c.weight,
                        weekend_extra: true,
                        start,
                        end: start + len,
                    });
                }
            }
            // Stable, so equal starts keep their order; select() needs time order.
            out[first..].sort_by_key(|c| c.start);
        }
    }
    out
}

/// Evening sample times (20:00, 20:30, …, 22:00) on the given weekdays.
fn evening_samples(p: &GenParams, end: u64, weekdays: &[u64]) -> Vec<u64> {
    let mut v = Vec::new();
    for d in 0..p.days as u64 {
        if weekdays.contains(&((p.start_weekday as u64 + d) % 7)) {
            for k in 0..5 {
                let t = d * DAY + 20 * HOUR + k * 30 * MIN;
                if t < end {
                    v.push(t);
                }
            }
        }
    }
    v
}

/// Play-probability scales: `alpha` for regular days, `beta` for the extra
/// Friday/Saturday evening sessions.
#[derive(Clone, Copy, Debug)]
struct Scales {
    alpha: f64,
    beta: f64,
}

/// Candidates that are played at the given scales, dropping any that would
/// overlap the customer's previous session.
fn select(cands: &[Candidate], scales: Scales, out: &mut Vec<Session>) {
    out.clear();
    let mut customer = u32::MAX;
    let mut free_at = 0u64;
    for c in cands {
        if c.customer != customer {
            customer = c.customer;
            free_at = 0;
        }
        let scale = if c.weekend_extra { scales.beta } else { scales.alpha };
        let plays = c.base_p < 0.0 || c.u < (scale * c.base_p).min(PLAY_P_MAX);
        if plays && c.start >= free_at {
            out.push(Session { customer: c.customer, start: c.start, end: c.end });
            free_at = c.end.saturating_add(GAP);
        }
    }
}

/// Mean number of sessions running at the sample times.
fn mean_running(sessions: &[Session], samples: &[u64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut total = 0usize;
    for s in sessions {
        let a = samples.partition_point(|&t| t < s.start);
        let b = samples.partition_point(|&t| t < s.end);
        total += b - a;
    }
    total as f64 / samples.len() as f64
}

/// Searches the scale `x` (applied through `scales`) whose played sessions'
/// mean running count at `samples` is closest to `target`.
///
/// The running count grows roughly linearly with the scale until the daily
/// cap flattens it, so each step rescales proportionally, with bounded steps
/// so a flat stretch cannot make it overshoot wildly. A dozen steps are
/// plenty: each costs one pass over the candidates.
fn fit_scale(cands: &[Candidate], samples: &[u64], target: f64, scales: impl Fn(f64) -> Scales) -> f64 {
    let mut sessions = Vec::new();
    select(cands, scales(0.0), &mut sessions);
    let fixed = mean_running(&sessions, samples);
    if fixed >= target || samples.is_empty() {
        return 0.0;
    }
    let mut best = (fixed - target).abs();
    let mut best_x = 0.0;
    let mut x = 1.0;
    for _ in 0..12 {
        select(cands, scales(x), &mut sessions);
        let m = mean_running(&sessions, samples);
        let err = (m - target).abs();
        if err < best {
            best = err;
            best_x = x;
        }
        if err <= 0.01 * target {
            break;
        }
        let variable = m - fixed;
        let factor = if variable > 0.0 { (target - fixed) / variable } else { 4.0 };
        x *= factor.clamp(0.25, 4.0);
        if x > 1e3 {
            break;
        }
    }
    best_x
}

/// Chooses the played sessions: first `alpha` so that Monday–Thursday
/// evenings (20:00–22:00) average `peak_concurrent` running servers, then
/// `beta` so that Friday/Saturday evenings average `weekend_boost` times
/// what the weekday evenings reached. A trace without a Monday–Thursday
/// evening calibrates `alpha` on all evenings and takes `beta` from a rule
/// of thumb.
fn calibrate(p: &GenParams, cands: &[Candidate], end: u64) -> Vec<Session> {
    let target = p.peak_concurrent as f64;
    let weekdays = evening_samples(p, end, &[0, 1, 2, 3]);
    let fri_sat = evening_samples(p, end, &[4, 5]);
    let mut sessions = Vec::new();
    let scales = if weekdays.is_empty() || fri_sat.is_empty() {
        let all = evening_samples(p, end, &[0, 1, 2, 3, 4, 5, 6]);
        let alpha = fit_scale(cands, &all, target, |x| Scales { alpha: x, beta: 0.0 });
        Scales { alpha, beta: alpha * (p.weekend_boost - 1.0).max(0.0) }
    } else {
        let alpha = fit_scale(cands, &weekdays, target, |x| Scales { alpha: x, beta: 0.0 });
        select(cands, Scales { alpha, beta: 0.0 }, &mut sessions);
        let weekday_level = mean_running(&sessions, &weekdays);
        let beta = fit_scale(cands, &fri_sat, p.weekend_boost * weekday_level, |x| Scales { alpha, beta: x });
        Scales { alpha, beta }
    };
    select(cands, scales, &mut sessions);
    sessions
}

/// Whether `customer` has no session overlapping `[start, end)` (with the
/// gap on both sides) among `sessions` (sorted by customer, then start)
/// and `extra`.
fn is_idle(sessions: &[Session], range: (usize, usize), extra: &[(u64, u64)], start: u64, end: u64) -> bool {
    let overlaps = |s: u64, e: u64| s < end.saturating_add(GAP) && start < e.saturating_add(GAP);
    !sessions[range.0..range.1].iter().any(|s| overlaps(s.start, s.end)) && !extra.iter().any(|&(s, e)| overlaps(s, e))
}

/// Adds the flash crowds' sessions; returns (regular, flash) sessions.
fn add_flash_crowds(
    p: &GenParams,
    seed: u64,
    customers: &mut Vec<Customer>,
    sessions: Vec<Session>,
    end: u64,
) -> (Vec<Session>, Vec<Session>) {
    let mut flash = Vec::new();
    if p.flash_crowds.is_empty() {
        return (sessions, flash);
    }
    let existing = customers.len();
    // Index range of each existing customer's sessions.
    let mut ranges = vec![(0usize, 0usize); existing];
    let mut i = 0;
    while i < sessions.len() {
        let c = sessions[i].customer as usize;
        let j = i + sessions[i..].iter().take_while(|s| s.customer as usize == c).count();
        ranges[c] = (i, j);
        i = j;
    }
    let mut extra: Vec<Vec<(u64, u64)>> = vec![Vec::new(); existing];
    for (k, crowd) in p.flash_crowds.iter().enumerate() {
        let mut rng = rng_for(seed, STREAM_FLASH, k as u64, 0);
        let from = crowd.at_s.saturating_mul(SEC);
        let width = crowd.within_s.saturating_mul(SEC);
        for _ in 0..crowd.starts {
            let start = from.saturating_add(between(&mut rng, 0, width));
            if start >= end {
                continue;
            }
            let mut chosen = None;
            for _ in 0..8 {
                if existing == 0 {
                    break;
                }
                let c = rng.random_range(0..existing);
                let len = casual_length(&mut rng, customers[c].tier);
                if is_idle(&sessions, ranges[c], &extra[c], start, start + len) {
                    chosen = Some((c, len));
                    break;
                }
            }
            let (c, len) = match chosen {
                Some(x) => x,
                None => {
                    let tier = pick_weighted(&mut rng, &p.tier_mix) as u8;
                    let plan = match tier {
                        0 | 1 => 0,
                        2 => 1,
                        _ => 1 + (unit(&mut rng) < 0.5) as u8,
                    };
                    customers.push(Customer { tier, plan, persona: Persona::Casual, weight: 1.0, team_days: 0 });
                    extra.push(Vec::new());
                    (customers.len() - 1, casual_length(&mut rng, tier))
                }
            };
            extra[c].push((start, start + len));
            flash.push(Session { customer: c as u32, start, end: start + len });
        }
    }
    (sessions, flash)
}

/// Appends the rows of one session: start, players rows, stop.
fn emit_session(p: &GenParams, seed: u64, c: &Customer, s: &Session, end: u64, rows: &mut Vec<GenRow>) {
    let server = s.customer;
    let mut push = |at_ms: u64, kind: u32, payload: u32| {
        if at_ms < end {
            rows.push(GenRow { at_ms, server, data: kind << KIND_SHIFT | payload });
        }
    };
    push(s.start, KIND_START, c.tier as u32 | (c.plan as u32) << 4);
    if p.players {
        let mut rng = rng_for(seed, STREAM_PLAYERS, s.customer as u64, s.start);
        let max = TIER_PLAYERS_MAX[c.tier as usize];
        let (lo, hi) = match c.persona {
            Persona::Team => (3.min(max), 5.min(max)),
            Persona::ModTester => (1, 2.min(max)),
            _ => (1, max),
        };
        let first = s.start + between(&mut rng, MIN, 2 * MIN);
        if s.end == NEVER {
            // Around the clock: follow the daily curve, often 0 at night.
            let mut t = first;
            while t < end {
                let clock = ((t % DAY) / HOUR) as usize;
                let level = PLAYER_CURVE[clock] * (0.6 + 0.6 * unit(&mut rng));
                push(t, KIND_PLAYERS, ((max as f64 * level).round() as u32).min(max));
                t += between(&mut rng, HOUR, 3 * HOUR);
            }
        } else if first + 3 * MIN < s.end {
            // Most servers have a few players, some many: skew to the low end.
            let draw = |rng: &mut ChaCha8Rng| {
                let u = unit(rng);
                lo + ((hi - lo) as f64 * u * u).round() as u32
            };
            let mut count = draw(&mut rng);
            push(first, KIND_PLAYERS, count);
            let mut last = first;
            let changes_until = s.end.saturating_sub(12 * MIN);
            if changes_until > first + MIN {
                let n = ((s.end - s.start) / HOUR).clamp(1, 3) as usize;
                let mut times = [0u64; 3];
                for t in times.iter_mut().take(n) {
                    *t = between(&mut rng, first + MIN, changes_until);
                }
                times[..n].sort_unstable();
                let step = (hi - lo).div_ceil(4).max(1) as i64;
                for &t in &times[..n] {
                    let delta = rng.random_range(-step..=step);
                    count = (count as i64 + delta).clamp(lo as i64, hi as i64) as u32;
                    push(t, KIND_PLAYERS, count);
                    last = t;
                }
            }
            if unit(&mut rng) < 0.5 {
                let t = s.end - between(&mut rng, 2 * MIN, 10 * MIN);
                if t > last {
                    push(t, KIND_PLAYERS, 0);
                }
            }
        }
    }
    if s.end != NEVER {
        push(s.end, KIND_STOP, 0);
    }
}

/// Appends `v` in decimal.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends milliseconds as seconds with three decimals (`{}.{:03}`), the time format of
/// traces and decisions.csv.
pub(crate) fn push_seconds(buf: &mut Vec<u8>, ms: u64) {
    push_u64(buf, ms / 1000);
    let ms = ms % 1000;
    buf.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
}

fn write_rows<W: Write>(rows: &[GenRow], mut out: W) -> io::Result<GenStats> {
    const PLANS: [&[u8]; 3] = [b"payperplay", b"balanced", b"reserved"];
    let mut stats = GenStats::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(b"at_s,server,action,ram_mb,plan,players\n");
    for r in rows {
        push_seconds(&mut buf, r.at_ms);
        buf.extend_from_slice(b",s");
        push_u64(&mut buf, r.server as u64);
        let payload = r.data & ((1 << KIND_SHIFT) - 1);
        match r.data >> KIND_SHIFT {
            KIND_START => {
                buf.extend_from_slice(b",start,");
                push_u64(&mut buf, TIER_MB[(payload & 0xF) as usize] as u64);
                buf.push(b',');
                buf.extend_from_slice(PLANS[(payload >> 4) as usize]);
                buf.extend_from_slice(b",\n");
                stats.starts += 1;
            }
            KIND_STOP => {
                buf.extend_from_slice(b",stop,,,\n");
                stats.stops += 1;
            }
            _ => {
                buf.extend_from_slice(b",players,,,");
                push_u64(&mut buf, payload as u64);
                buf.push(b'\n');
                stats.players_rows += 1;
            }
        }
        stats.rows += 1;
        if buf.len() >= (1 << 16) - 256 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Action, TracePlan, TraceReader};
    use std::collections::HashMap;

    /// A parsed row, owned.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct R {
        at_ms: u64,
        server: String,
        action: Action,
        ram_mb: u32,
        plan: TracePlan,
        players: u32,
    }

    fn gen(p: &GenParams, seed: u64) -> (Vec<u8>, GenStats) {
        let mut out = Vec::new();
        let stats = generate(p, seed, &mut out).expect("generate");
        (out, stats)
    }

    /// Parses a generated trace, failing the test on any reader error.
    fn parse(data: &[u8]) -> Vec<R> {
        let mut r = TraceReader::new("gen.csv", data).expect("header");
        let mut rows = Vec::new();
        while let Some(row) = r.next_row() {
            let row = row.unwrap_or_else(|e| panic!("{e}"));
            rows.push(R {
                at_ms: row.at_ms,
                server: row.server.to_string(),
                action: row.action,
                ram_mb: row.ram_mb,
                plan: row.plan,
                players: row.players,
            });
        }
        rows
    }

    /// Checks per-server consistency and returns (start, end) intervals;
    /// end is `u64::MAX` for sessions still running at the end.
    fn sessions(rows: &[R]) -> Vec<(String, u64, u64)> {
        let mut open: HashMap<&str, u64> = HashMap::new();
        let mut out = Vec::new();
        for r in rows {
            match r.action {
                Action::Start => {
                    assert!(open.insert(&r.server, r.at_ms).is_none(), "overlapping start {r:?}");
                }
                Action::Stop => {
                    let s = open.remove(r.server.as_str()).unwrap_or_else(|| panic!("stop while stopped {r:?}"));
                    assert!(r.at_ms > s);
                    out.push((r.server.clone(), s, r.at_ms));
                }
                Action::Players => assert!(open.contains_key(r.server.as_str()), "players while stopped {r:?}"),
            }
        }
        out.extend(open.into_iter().map(|(k, s)| (k.to_string(), s, u64::MAX)));
        out
    }

    /// Mean running count at every minute of [from_h, to_h) on the given weekdays.
    fn mean_running_at(p: &GenParams, sess: &[(String, u64, u64)], weekdays: &[u64], from_h: u64, to_h: u64) -> f64 {
        let mut times = Vec::new();
        for d in 0..p.days as u64 {
            if weekdays.contains(&((p.start_weekday as u64 + d) % 7)) {
                let mut t = d * DAY + from_h * HOUR;
                while t < d * DAY + to_h * HOUR {
                    times.push(t);
                    t += MIN;
                }
            }
        }
        let total: usize = times.iter().map(|&t| sess.iter().filter(|s| s.1 <= t && t < s.2).count()).sum();
        total as f64 / times.len() as f64
    }

    #[test]
    fn default_trace_parses_and_is_consistent() {
        let p = GenParams::default();
        let (data, stats) = gen(&p, 42);
        let rows = parse(&data);
        assert_eq!(rows.len() as u64, stats.rows);
        assert_eq!(rows.iter().filter(|r| r.action == Action::Start).count() as u64, stats.starts);
        assert_eq!(rows.iter().filter(|r| r.action == Action::Stop).count() as u64, stats.stops);
        assert_eq!(rows.iter().filter(|r| r.action == Action::Players).count() as u64, stats.players_rows);
        assert!(stats.starts > 500, "{stats:?}");
        let header = std::str::from_utf8(&data).unwrap().lines().next().unwrap();
        assert_eq!(header, "at_s,server,action,ram_mb,plan,players");
        // at_s always has exactly three decimals; server ids are s{index}.
        for line in std::str::from_utf8(&data).unwrap().lines().skip(1) {
            let at = line.split(',').next().unwrap();
            assert_eq!(at.len() - at.find('.').unwrap(), 4, "{line}");
        }
        for r in &rows {
            let idx: u32 = r.server.strip_prefix('s').unwrap().parse().unwrap();
            assert!(idx < p.customers);
            assert!(r.at_ms < p.days as u64 * DAY);
        }
        sessions(&rows);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_differs() {
        let mut p = GenParams::default();
        p.flash_crowds.push(FlashCrowd { at_s: 2 * 86_400 + 20 * 3600, starts: 30, within_s: 1800 });
        assert_eq!(gen(&p, 7).0, gen(&p, 7).0);
        assert_ne!(gen(&p, 7).0, gen(&p, 8).0);
    }

    #[test]
    fn start_rows_carry_tier_and_plan() {
        let (data, _) = gen(&GenParams { days: 14, customers: 400, peak_concurrent: 80, ..Default::default() }, 3);
        let rows = parse(&data);
        let mut plans_large = HashMap::new();
        for r in rows.iter().filter(|r| r.action == Action::Start) {
            assert!(TIER_MB.contains(&r.ram_mb), "{r:?}");
            match r.ram_mb {
                2048 | 4096 => assert_eq!(r.plan, TracePlan::PayPerPlay),
                8192 => assert_eq!(r.plan, TracePlan::Balanced),
                _ => {
                    assert_ne!(r.plan, TracePlan::PayPerPlay);
                    *plans_large.entry(r.plan == TracePlan::Reserved).or_insert(0) += 1;
                }
            }
        }
        assert!(plans_large.len() == 2, "both reserved and balanced large servers: {plans_large:?}");
        // Stop rows leave ram_mb/plan/players empty.
        for line in std::str::from_utf8(&data).unwrap().lines().filter(|l| l.contains(",stop")) {
            assert!(line.ends_with(",stop,,,"), "{line}");
        }
    }

    #[test]
    fn weekday_evening_peak_is_calibrated() {
        let cases = [
            GenParams::default(),
            GenParams { days: 14, start_weekday: 3, customers: 1000, peak_concurrent: 120, ..Default::default() },
            GenParams {
                days: 7,
                customers: 300,
                peak_concurrent: 100,
                tier_mix: [10, 30, 40, 15, 5],
                ..Default::default()
            },
            GenParams { days: 7, customers: 2000, peak_concurrent: 150, players: false, ..Default::default() },
        ];
        for (i, p) in cases.iter().enumerate() {
            let rows = parse(&gen(p, 100 + i as u64).0);
            let sess = sessions(&rows);
            let peak = mean_running_at(p, &sess, &[0, 1, 2, 3], 19, 23);
            let target = p.peak_concurrent as f64;
            assert!(
                (peak - target).abs() <= 0.35 * target,
                "case {i}: weekday 19-23h mean {peak:.1} vs target {target}"
            );
        }
    }

    #[test]
    fn demand_shape_and_weekend_boost() {
        let p = GenParams { days: 14, customers: 1000, peak_concurrent: 200, ..Default::default() };
        let rows = parse(&gen(&p, 5).0);
        let sess = sessions(&rows);
        let weekdays = [0, 1, 2, 3];
        let evening = mean_running_at(&p, &sess, &weekdays, 19, 23);
        let morning = mean_running_at(&p, &sess, &weekdays, 4, 10);
        let always_on = sess.iter().filter(|s| s.1 < 5 * MIN && s.2 == u64::MAX).count() as f64;
        // The variable part of the morning is small; always-on servers are a floor.
        assert!(
            morning - always_on < 0.12 * evening,
            "morning {morning:.1} (always-on {always_on}) evening {evening:.1}"
        );
        let afternoon = mean_running_at(&p, &sess, &weekdays, 13, 14);
        assert!(afternoon < 0.6 * evening, "afternoon {afternoon:.1} evening {evening:.1}");
        let late_night = mean_running_at(&p, &sess, &[1, 2, 3], 3, 4);
        assert!(
            late_night - always_on < 0.15 * evening,
            "03:00 {late_night:.1} (always-on {always_on}) evening {evening:.1}"
        );
        let fri_sat = mean_running_at(&p, &sess, &[4, 5], 19, 23);
        let ratio = fri_sat / evening;
        assert!((1.6 * 0.85..=1.6 * 1.15).contains(&ratio), "fri/sat {fri_sat:.1} weekday {evening:.1}");
        // Starts: few in the morning, many in the evening.
        let starts_in = |from_h: u64, to_h: u64| {
            rows.iter()
                .filter(|r| r.action == Action::Start && (from_h..to_h).contains(&(r.at_ms % DAY / HOUR)))
                .count()
        };
        assert!(starts_in(3, 10) * 4 < starts_in(17, 22), "{} vs {}", starts_in(3, 10), starts_in(17, 22));
    }

    #[test]
    fn session_lengths_by_tier_and_always_on() {
        let p = GenParams {
            days: 14,
            customers: 600,
            peak_concurrent: 120,
            always_on_fraction_large: 0.5,
            ..Default::default()
        };
        let rows = parse(&gen(&p, 11).0);
        let sess = sessions(&rows);
        let mut ram = HashMap::new();
        for r in rows.iter().filter(|r| r.action == Action::Start) {
            ram.insert(r.server.clone(), r.ram_mb);
        }
        let mut always_on = 0;
        // (tier range count, in-range count) for 2/4 GB in 1-2 h and 8 GB in 2-4 h.
        let mut typical = [(0, 0); 2];
        for (server, s, e) in &sess {
            let mb = ram[server];
            if *e == u64::MAX {
                if mb >= 16384 && *s < 5 * MIN {
                    always_on += 1;
                }
                continue;
            }
            let len = e - s;
            match mb {
                // Personas stretch these: mod testers' 20-40 min, weekend players' up to 8 h.
                2048 | 4096 | 8192 => assert!((20 * MIN..=8 * HOUR).contains(&len), "{server} {mb} {len}"),
                _ => assert!((8 * HOUR..=12 * HOUR).contains(&len), "{server} {mb} {len}"),
            }
            let (k, range) = if mb == 8192 { (1, 2 * HOUR..=4 * HOUR) } else { (0, HOUR..=2 * HOUR) };
            if mb <= 8192 {
                typical[k].0 += 1;
                typical[k].1 += range.contains(&len) as usize;
            }
        }
        for (total, fit) in typical {
            assert!(fit as f64 > 0.4 * total as f64, "{fit} of {total} sessions in the tier's typical range");
        }
        let large = ram.values().filter(|&&m| m >= 16384).count();
        assert!(always_on > 0 && always_on < large, "always-on {always_on} of {large} large");
    }

    #[test]
    fn players_rows_follow_rules() {
        let p = GenParams { days: 7, customers: 500, peak_concurrent: 100, ..Default::default() };
        let rows = parse(&gen(&p, 9).0);
        let mut ram = HashMap::new();
        let mut last_start = HashMap::new();
        let mut last_players: HashMap<String, (u64, u32)> = HashMap::new();
        let (mut zero_before_stop, mut stops) = (0, 0);
        for r in &rows {
            match r.action {
                Action::Start => {
                    ram.insert(r.server.clone(), r.ram_mb);
                    last_start.insert(r.server.clone(), r.at_ms);
                    last_players.remove(&r.server);
                }
                Action::Players => {
                    let max = TIER_PLAYERS_MAX[TIER_MB.iter().position(|&m| m == ram[&r.server]).unwrap()];
                    assert!(r.players <= max, "{r:?}");
                    let since = r.at_ms - last_start[&r.server];
                    if !last_players.contains_key(&r.server) {
                        assert!((MIN..=2 * MIN).contains(&since), "first players row {since} ms after start");
                    }
                    last_players.insert(r.server.clone(), (r.at_ms, r.players));
                }
                Action::Stop => {
                    stops += 1;
                    if let Some(&(t, 0)) = last_players.get(&r.server) {
                        assert!((2 * MIN..=10 * MIN).contains(&(r.at_ms - t)));
                        zero_before_stop += 1;
                    }
                }
            }
        }
        let share = zero_before_stop as f64 / stops as f64;
        assert!((0.35..0.65).contains(&share), "zero-before-stop share {share}");
        let off = GenParams { players: false, ..p.clone() };
        let (_, stats) = gen(&off, 9);
        assert_eq!(stats.players_rows, 0);
    }

    #[test]
    fn substreams_are_independent() {
        let p = GenParams::default();
        let base = parse(&gen(&p, 21).0);
        let no_players = parse(&gen(&GenParams { players: false, ..p.clone() }, 21).0);
        let sessions_only =
            |rows: &[R]| rows.iter().filter(|r| r.action != Action::Players).cloned().collect::<Vec<_>>();
        assert_eq!(sessions_only(&base), no_players);
        // A flash crowd adds sessions but keeps every regular one.
        let crowd = GenParams {
            flash_crowds: vec![FlashCrowd { at_s: 3 * 86_400 + 19 * 3600, starts: 60, within_s: 3600 }],
            ..p.clone()
        };
        let with_crowd = parse(&gen(&crowd, 21).0);
        let crowd_starts = with_crowd.iter().filter(|r| r.action == Action::Start).count();
        let base_starts = base.iter().filter(|r| r.action == Action::Start).count();
        assert_eq!(crowd_starts, base_starts + 60);
        let set: std::collections::HashSet<_> =
            with_crowd.iter().filter(|r| r.action != Action::Players).map(|r| (r.at_ms, r.server.clone())).collect();
        for r in sessions_only(&base) {
            assert!(set.contains(&(r.at_ms, r.server.clone())), "{r:?} lost by adding a flash crowd");
        }
        sessions(&with_crowd);
    }

    #[test]
    fn flash_crowd_starts_land_in_window_and_may_add_customers() {
        let p = GenParams {
            customers: 20,
            peak_concurrent: 5,
            flash_crowds: vec![FlashCrowd { at_s: 86_400 + 20 * 3600, starts: 50, within_s: 600 }],
            ..Default::default()
        };
        let base = parse(&gen(&GenParams { flash_crowds: vec![], ..p.clone() }, 4).0);
        let rows = parse(&gen(&p, 4).0);
        sessions(&rows);
        let window = |r: &&R| {
            r.action == Action::Start && (86_400_000 + 20 * HOUR..86_400_000 + 20 * HOUR + 600_000).contains(&r.at_ms)
        };
        assert_eq!(rows.iter().filter(window).count(), base.iter().filter(window).count() + 50);
        let max_id = rows.iter().map(|r| r.server[1..].parse::<u32>().unwrap()).max().unwrap();
        assert!(max_id >= 20, "more starts than idle customers need new ones");
    }

    #[test]
    fn edge_cases() {
        let (data, stats) = gen(&GenParams { days: 0, ..Default::default() }, 1);
        assert_eq!(data, b"at_s,server,action,ram_mb,plan,players\n");
        assert_eq!(stats, GenStats::default());
        let (_, stats) = gen(&GenParams { customers: 0, ..Default::default() }, 1);
        assert_eq!(stats.rows, 0);
        let (data, _) = gen(&GenParams { days: 1, start_weekday: 5, peak_concurrent: 0, ..Default::default() }, 1);
        parse(&data);
        let (data, _) = gen(&GenParams { customers: 10, peak_concurrent: 1000, ..Default::default() }, 1);
        sessions(&parse(&data));
        // A crowd in the trace's last second with a window far past its end: starts
        // beyond the end are dropped.
        let late = GenParams {
            days: 1,
            flash_crowds: vec![FlashCrowd { at_s: 86_399, starts: 5, within_s: u64::MAX }],
            ..Default::default()
        };
        parse(&gen(&late, 1).0);
        for bad in [
            // A crowd after the trace's last day would silently vanish.
            GenParams {
                days: 1,
                flash_crowds: vec![FlashCrowd { at_s: 86_400, starts: 5, within_s: 1 }],
                ..Default::default()
            },
            GenParams { customers: CUSTOMERS_MAX + 1, ..Default::default() },
            GenParams { start_weekday: 7, ..Default::default() },
            GenParams { tier_mix: [0; 5], ..Default::default() },
            GenParams { always_on_fraction_large: 1.5, ..Default::default() },
            GenParams { weekend_boost: f64::NAN, ..Default::default() },
            GenParams {
                flash_crowds: vec![FlashCrowd { at_s: 0, starts: FLASH_STARTS_MAX + 1, within_s: 3 }],
                ..Default::default()
            },
        ] {
            let e = generate(&bad, 1, Vec::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }
}
