//! Streaming reader for CSV load traces.
//!
//! A load trace tells the simulator when customers start and stop their
//! servers and how many players are on them. It is read row by row, so a
//! trace of millions of rows never has to fit in memory, and parsing is
//! hand-written at byte level because the whole simulator has to push
//! several million rows per second.
//!
//! # Format
//!
//! ```text
//! at_s,server,action,ram_mb,plan,players
//! 0.000,s1,start,4096,payperplay,
//! 75.250,s1,players,,,7
//! 3600,s1,stop,,,
//! ```
//!
//! * **Header row.** Line 1 must be a header row. Columns are matched by
//!   name (case-sensitive), in any order; unknown extra columns are ignored.
//!   A duplicate column name is an error. A UTF-8 byte-order mark before the
//!   header is ignored.
//!   * Required columns: `at_s`, `server`, `action`.
//!   * Optional columns: `ram_mb` (required on `start` rows), `plan`
//!     (read on `start` rows), `players` (required on `players` rows).
//! * **Cells.** Cells are separated by commas. ASCII whitespace around each
//!   cell is trimmed. There is no quoting: cells may not contain commas or
//!   quotes, and a `"` anywhere in a line is an error. Every data row must
//!   have exactly as many cells as the header.
//! * **Lines.** `\n` and `\r\n` line endings are accepted. A line may be at
//!   most [`LINE_LEN_MAX`] bytes long, not counting its line ending. Blank
//!   lines (empty or only whitespace) are skipped, but still counted, so line
//!   numbers in errors are the physical lines of the file (the header is line
//!   1, the first data row normally line 2). The file must be valid UTF-8.
//! * `at_s`: seconds from the start of the trace, a non-negative decimal
//!   number written as digits with an optional `.` and fraction digits
//!   (`12`, `12.5`, `0.001`). No sign, no exponent, no `nan`/`inf`. It is
//!   converted to whole milliseconds without floating point; more than three
//!   fraction digits are rounded half up to the nearest millisecond. At most
//!   [`AT_S_MAX`] seconds. Rows must be sorted by time: a row may share the
//!   previous row's time but not be earlier.
//! * `server`: the server's id, non-empty, at most [`SERVER_LEN_MAX`] bytes.
//! * `action`: `start`, `stop` or `players`.
//! * `ram_mb`: on `start` rows, the server's memory in MB, an integer in
//!   1..=[`RAM_MB_MAX`].
//! * `plan`: on `start` rows, `payperplay`, `balanced` or `reserved`; an empty
//!   cell or a missing column means `payperplay`.
//! * `players`: on `players` rows, the number of players now online, an
//!   integer in 0..=[`PLAYERS_MAX`].
//!
//! Cells of optional columns that do not apply to a row's action (for
//! example `ram_mb` on a `stop` row) are ignored and not validated, so
//! generators may leave them empty or fill them as they like.
//!
//! # Errors
//!
//! Every error is a [`TraceError`] that prints as `path:line: message`, and
//! the message names the offending column, e.g.
//! `trace.csv:7: ram_mb: "abc" is not a positive integer`. An error in one
//! data row does not end the stream: the next call to
//! [`TraceReader::next_row`] goes on with the next line, so a caller may
//! collect all errors or stop at the first; a rejected row does not count
//! as "the previous row" for the time-order check. Header problems
//! (including an empty file or a blank line 1) are reported by
//! [`TraceReader::new`] at line 1. A read error from the underlying reader
//! (`path:line: read error: ...`) ends the stream; a file that cannot be
//! opened is reported at line 0. No input makes the reader panic.

use std::io::BufRead;

/// Longest accepted line in bytes, not counting the line ending. Bounds the
/// memory one line can take, whatever the input.
pub const LINE_LEN_MAX: usize = 4096;
/// Longest accepted `server` id in bytes.
pub const SERVER_LEN_MAX: usize = 128;
/// Largest accepted `at_s` in seconds: 400 days, the longest `duration` a scenario takes.
pub const AT_S_MAX: u64 = 400 * 86_400;
/// Largest accepted `ram_mb` (1 TiB).
pub const RAM_MB_MAX: u32 = 1_048_576;
/// Largest accepted `players` count.
pub const PLAYERS_MAX: u32 = 100_000;

/// What a row does to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The customer starts the server.
    Start,
    /// The customer stops the server.
    Stop,
    /// The number of players online on the server changed.
    Players,
}

/// The billing plan a server is started on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TracePlan {
    /// Billed per minute while running (the default).
    #[default]
    PayPerPlay,
    /// Cheaper base fee plus reduced per-minute rate.
    Balanced,
    /// Capacity reserved around the clock.
    Reserved,
}

impl From<TracePlan> for conductor_core::Plan {
    fn from(p: TracePlan) -> Self {
        match p {
            TracePlan::PayPerPlay => conductor_core::Plan::PayPerPlay,
            TracePlan::Balanced => conductor_core::Plan::Balanced,
            TracePlan::Reserved => conductor_core::Plan::Reserved,
        }
    }
}

/// One data row of a trace, borrowing its server id from the reader's line
/// buffer (so reading a row allocates nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    /// Physical line number in the file (header is line 1).
    pub line: u64,
    /// Time from the start of the trace in milliseconds.
    pub at_ms: u64,
    /// Server id, trimmed.
    pub server: &'a str,
    /// What happens.
    pub action: Action,
    /// Memory in MB on `start` rows; 0 on other rows.
    pub ram_mb: u32,
    /// Plan on `start` rows; [`TracePlan::PayPerPlay`] on other rows.
    pub plan: TracePlan,
    /// Players online on `players` rows; 0 on other rows.
    pub players: u32,
}

/// A problem with a trace, located by file and physical line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct TraceError {
    /// The path (or name) the reader was given.
    pub path: String,
    /// Physical line number, 1-based; 0 when the file could not be opened.
    pub line: u64,
    /// What is wrong, naming the column where there is one.
    pub message: String,
}

// Column slots the reader cares about; index into `Columns::present` and the
// per-row cell table.
const AT_S: usize = 0;
const SERVER: usize = 1;
const ACTION: usize = 2;
const RAM_MB: usize = 3;
const PLAN: usize = 4;
const PLAYERS: usize = 5;
const SLOTS: usize = 6;
const SLOT_NAMES: [&str; SLOTS] = ["at_s", "server", "action", "ram_mb", "plan", "players"];
/// Marks a slot whose column is not in the header.
const NO_COL: usize = usize::MAX;

const QUOTE_MESSAGE: &str = "'\"' found: quoting is not supported, cells may not contain commas or quotes";

/// Header layout: which physical column feeds each slot.
#[derive(Debug)]
struct Columns {
    ncols: usize,
    col_of: [usize; SLOTS],
}

impl Columns {
    fn present(&self, slot: usize) -> bool {
        self.col_of[slot] != NO_COL
    }
}

/// Size of the per-line comma-position table: a power of two above the most
/// commas a line can hold, so that masking the index proves it in bounds.
const COMMAS: usize = 8192;
const _: () = assert!(COMMAS > LINE_LEN_MAX && COMMAS.is_power_of_two() && LINE_LEN_MAX < u16::MAX as usize);

/// Streaming trace reader; see the module docs for the format.
///
/// One internal line buffer is reused for every row, and [`Row`] borrows
/// from it, so the steady state allocates nothing.
pub struct TraceReader<R: BufRead> {
    path: String,
    reader: R,
    buf: Vec<u8>,
    line: u64,
    cols: Columns,
    commas: Box<[u16; COMMAS]>,
    prev_at_ms: u64,
    done: bool,
}

impl<R: BufRead> std::fmt::Debug for TraceReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .field("cols", &self.cols)
            .field("prev_at_ms", &self.prev_at_ms)
            .field("done", &self.done)
            .finish()
    }
}

/// Outcome of reading one physical line.
enum LineRead {
    Eof,
    Line,
    TooLong,
}

impl<R: BufRead> TraceReader<R> {
    /// Wraps `reader`, reading and validating the header row. `path` is used
    /// only in error messages.
    pub fn new(path: impl Into<String>, reader: R) -> Result<Self, TraceError> {
        let mut me = TraceReader {
            path: path.into(),
            reader,
            buf: Vec::with_capacity(256),
            line: 0,
            cols: Columns { ncols: 0, col_of: [NO_COL; SLOTS] },
            commas: Box::new([0; COMMAS]),
            prev_at_ms: 0,
            done: false,
        };
        match me.read_line()? {
            LineRead::Eof => return Err(me.err_at(1, "header: missing (the file is empty)".into())),
            LineRead::TooLong => return Err(me.err(too_long_message())),
            LineRead::Line => {}
        }
        let mut bytes: &[u8] = &me.buf;
        if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
            bytes = rest;
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => return Err(me.err(utf8_message(&e))),
        };
        if is_blank(text.as_bytes()) {
            return Err(me.err("header: expected a header row on line 1, found a blank line".into()));
        }
        if text.as_bytes().contains(&b'"') {
            return Err(me.err(QUOTE_MESSAGE.into()));
        }
        // Lines end in \n or \r\n: a file with old Mac line endings (\r alone) would be
        // one long header, and the run would see no rows at all.
        if text.trim_end_matches(['\r', '\n']).contains('\r') {
            let message = "header: a carriage return inside the line (lines must end in \\n or \\r\\n, not \\r alone)";
            return Err(me.err(message.into()));
        }
        let mut col_of = [NO_COL; SLOTS];
        let ncols = text.split(',').count();
        let mut seen: Vec<&str> = Vec::new();
        for (col, name) in text.split(',').map(|c| c.trim_matches(|c: char| c.is_ascii_whitespace())).enumerate() {
            if !name.is_empty() {
                if seen.contains(&name) {
                    let message = format!("header: duplicate column \"{name}\"");
                    return Err(me.err(message));
                }
                seen.push(name);
            }
            if let Some(slot) = SLOT_NAMES.iter().position(|&s| s == name) {
                col_of[slot] = col;
            }
        }
        for slot in [AT_S, SERVER, ACTION] {
            if col_of[slot] == NO_COL {
                let message = format!("header: missing required column \"{}\"", SLOT_NAMES[slot]);
                return Err(me.err(message));
            }
        }
        me.cols = Columns { ncols, col_of };
        Ok(me)
    }

    /// Physical line number of the last line read (1 after the header).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next data row, `None` at the end of input (or after a read
    /// error). A malformed row yields `Some(Err(..))` and the reader moves on
    /// to the next line on the following call.
    pub fn next_row(&mut self) -> Option<Result<Row<'_>, TraceError>> {
        if self.done {
            return None;
        }
        loop {
            match self.read_line() {
                Err(e) => return Some(Err(e)),
                Ok(LineRead::Eof) => {
                    self.done = true;
                    return None;
                }
                Ok(LineRead::TooLong) => return Some(Err(self.err(too_long_message()))),
                Ok(LineRead::Line) => {
                    if !is_blank(&self.buf) {
                        break;
                    }
                }
            }
        }
        let len = self.buf.len();
        self.buf.extend_from_slice(&[0; PAD]);
        let row = match parse_row(&self.buf, len, &self.cols, &mut self.commas) {
            Ok(row) => row,
            Err(message) => return Some(Err(err_at(&self.path, self.line, message))),
        };
        if row.at_ms < self.prev_at_ms {
            let message = format!(
                "row time {} s is earlier than the previous row's {} s",
                FmtMs(row.at_ms),
                FmtMs(self.prev_at_ms)
            );
            return Some(Err(err_at(&self.path, self.line, message)));
        }
        self.prev_at_ms = row.at_ms;
        Some(Ok(Row { line: self.line, ..row }))
    }

    /// Reads one physical line into `self.buf` without its line ending,
    /// keeping at most `LINE_LEN_MAX + 1` bytes so that a file without
    /// newlines cannot make the buffer grow without bound.
    fn read_line(&mut self) -> Result<LineRead, TraceError> {
        // One byte more than the limit so a trailing '\r' of a line of
        // exactly LINE_LEN_MAX bytes still fits and can be stripped.
        const KEEP: usize = LINE_LEN_MAX + 1;
        // (The buffer's capacity also leaves room for parse_row's padding.)
        self.buf.clear();
        let mut got_any = false;
        let mut overflow = false;
        loop {
            let avail = match self.reader.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    self.line += 1;
                    return Err(err_at(&self.path, self.line, format!("read error: {e}")));
                }
            };
            if avail.is_empty() {
                break;
            }
            got_any = true;
            let (chunk, used, eol) = match find_newline(avail) {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            let room = KEEP - self.buf.len();
            if chunk.len() > room {
                self.buf.extend_from_slice(&chunk[..room]);
                overflow = true;
            } else {
                self.buf.extend_from_slice(chunk);
            }
            self.reader.consume(used);
            if eol {
                break;
            }
        }
        if !got_any {
            return Ok(LineRead::Eof);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if overflow || self.buf.len() > LINE_LEN_MAX {
            return Ok(LineRead::TooLong);
        }
        Ok(LineRead::Line)
    }

    fn err(&self, message: String) -> TraceError {
        err_at(&self.path, self.line, message)
    }

    fn err_at(&self, line: u64, message: String) -> TraceError {
        err_at(&self.path, line, message)
    }
}

/// Opens a trace file, buffered, and reads its header.
pub fn open(path: &std::path::Path) -> Result<TraceReader<std::io::BufReader<std::fs::File>>, TraceError> {
    let name = path.display().to_string();
    match std::fs::File::open(path) {
        Ok(f) => TraceReader::new(name, std::io::BufReader::with_capacity(1 << 16, f)),
        Err(e) => Err(err_at(&name, 0, format!("cannot open: {e}"))),
    }
}

fn err_at(path: &str, line: u64, message: String) -> TraceError {
    TraceError { path: path.to_string(), line, message }
}

fn too_long_message() -> String {
    format!("line is longer than {LINE_LEN_MAX} bytes")
}

fn utf8_message(e: &std::str::Utf8Error) -> String {
    format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1)
}

/// Finds the first '\n', eight bytes at a time (SWAR), since this scan runs
/// over every byte of the trace.
#[inline]
fn find_newline(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= hay.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ NL;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

#[inline]
fn is_space(b: u8) -> bool {
    b.is_ascii_whitespace()
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_space(b))
}

/// Formats milliseconds as seconds with three decimals, for messages.
struct FmtMs(u64);

impl std::fmt::Display for FmtMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Bytes of zero padding after a line in the buffer, so that 8-byte loads
/// starting anywhere inside the line stay in bounds.
const PAD: usize = 8;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` that is zero, exactly (no false
/// positives, unlike the cheaper borrow trick used for `find_newline`).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & !HIGHS).wrapping_add(!HIGHS)) | x) & HIGHS
}

/// One bit per byte of `w` (bit j for byte j) that is a comma. The multiply
/// gathers the eight per-byte flags into the top byte.
#[inline]
fn comma_bits(w: u64) -> u64 {
    ((zero_bytes(w ^ (ONES * b',' as u64)) >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

#[inline]
fn load8(p: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&p[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Splits a data line into the cells the reader cares about and validates
/// them. The line number is filled in by the caller.
///
/// `p` is the line followed by at least [`PAD`] zero bytes; `len` is the
/// line's length. Commas (and quotes) are found eight bytes at a time and
/// collected into a bitmap per 64 bytes, whose set bits give the cell
/// boundaries. Measured against the alternatives, this is about twice as
/// fast as a search per cell (a serial chain of load-to-result latencies)
/// and much faster than a branch per byte (mispredicting on nearly every
/// cell).
fn parse_row<'a>(p: &'a [u8], len: usize, cols: &Columns, commas: &mut [u16; COMMAS]) -> Result<Row<'a>, String> {
    // One validation of the whole line (fast for ASCII) gives a &str that
    // the server id can be sliced from without further checks.
    let text = match std::str::from_utf8(&p[..len]) {
        Ok(t) => t,
        Err(e) => return Err(utf8_message(&e)),
    };
    let bytes = text.as_bytes();
    let mut quotes = 0u64;
    let mut n = 0usize;
    let mut chunk = 0;
    while chunk < len {
        // Bitmap of the commas in the next 64 bytes, built from independent
        // 8-byte loads, then walked with trailing_zeros.
        let mut bits = 0u64;
        let mut i = 0;
        while i < 64 && chunk + i < len {
            let w = load8(p, chunk + i);
            quotes |= zero_bytes(w ^ (ONES * b'"' as u64));
            bits |= comma_bits(w) << i;
            i += 8;
        }
        while bits != 0 {
            // Masking keeps the index provably in bounds (n < len < COMMAS).
            commas[n & (COMMAS - 1)] = (chunk + bits.trailing_zeros() as usize) as u16;
            n += 1;
            bits &= bits - 1;
        }
        chunk += 64;
    }
    if quotes != 0 {
        return Err(QUOTE_MESSAGE.into());
    }
    if n + 1 != cols.ncols {
        return Err(cell_count_message(cols.ncols, n + 1));
    }
    let commas = &*commas;
    let cell = |slot: usize| -> (usize, usize) { cell_range(bytes, cols, commas, slot) };
    let bytes_of = |(a, b): (usize, usize)| &bytes[a..b];

    let at_ms = parse_at_ms(bytes_of(cell(AT_S)))?;

    let (a, b) = cell(SERVER);
    let server = &text[a..b];
    if server.is_empty() {
        return Err("server: empty".into());
    }
    if server.len() > SERVER_LEN_MAX {
        return Err(format!("server: {} bytes is longer than the maximum of {SERVER_LEN_MAX}", server.len()));
    }

    let action = match bytes_of(cell(ACTION)) {
        b"start" => Action::Start,
        b"stop" => Action::Stop,
        b"players" => Action::Players,
        b"" => return Err("action: empty".into()),
        other => return Err(format!("action: \"{}\" is not one of start, stop, players", show(other))),
    };

    let mut row = Row { line: 0, at_ms, server, action, ram_mb: 0, plan: TracePlan::PayPerPlay, players: 0 };
    match action {
        Action::Start => {
            if !cols.present(RAM_MB) {
                return Err("ram_mb: required on start rows, but the header has no ram_mb column".into());
            }
            let ram = bytes_of(cell(RAM_MB));
            if ram.is_empty() {
                return Err("ram_mb: empty, but required on start rows".into());
            }
            row.ram_mb = match parse_uint(ram) {
                Err(UintError::NotDigits) => {
                    return Err(format!("ram_mb: \"{}\" is not a positive integer", show(ram)))
                }
                Ok(v) if (1..=RAM_MB_MAX as u64).contains(&v) => v as u32,
                _ => return Err(format!("ram_mb: \"{}\" is out of range 1..={RAM_MB_MAX}", show(ram))),
            };
            row.plan = match bytes_of(cell(PLAN)) {
                b"" | b"payperplay" => TracePlan::PayPerPlay,
                b"balanced" => TracePlan::Balanced,
                b"reserved" => TracePlan::Reserved,
                other => return Err(format!("plan: \"{}\" is not one of payperplay, balanced, reserved", show(other))),
            };
        }
        Action::Players => {
            if !cols.present(PLAYERS) {
                return Err("players: required on players rows, but the header has no players column".into());
            }
            let p = bytes_of(cell(PLAYERS));
            if p.is_empty() {
                return Err("players: empty, but required on players rows".into());
            }
            row.players = match parse_uint(p) {
                Err(UintError::NotDigits) => {
                    return Err(format!("players: \"{}\" is not a non-negative integer", show(p)))
                }
                Ok(v) if v <= PLAYERS_MAX as u64 => v as u32,
                _ => return Err(format!("players: \"{}\" is out of range 0..={PLAYERS_MAX}", show(p))),
            };
        }
        Action::Stop => {}
    }
    Ok(row)
}

/// Byte range of a slot's cell, trimmed; empty if the column is absent.
/// Cut at commas and ASCII whitespace, so always on char boundaries.
#[inline(always)]
fn cell_range(bytes: &[u8], cols: &Columns, commas: &[u16; COMMAS], slot: usize) -> (usize, usize) {
    let k = cols.col_of[slot];
    if k == NO_COL {
        return (0, 0);
    }
    let mut start = if k == 0 { 0 } else { commas[(k - 1) & (COMMAS - 1)] as usize + 1 };
    let mut end = if k == cols.ncols - 1 { bytes.len() } else { commas[k & (COMMAS - 1)] as usize };
    while start < end && is_space(bytes[start]) {
        start += 1;
    }
    while end > start && is_space(bytes[end - 1]) {
        end -= 1;
    }
    (start, end)
}

fn cell_count_message(expected: usize, found: usize) -> String {
    format!("expected {expected} cells (as in the header), found {found}")
}

/// A cell for an error message (cells are valid UTF-8 by the time they are
/// shown; lossy conversion only keeps this panic-free regardless).
fn show(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

enum UintError {
    NotDigits,
    Overflow,
}

/// Value of a run of ASCII digits, or `None` if it has more than `max_sig`
/// significant digits (leading zeros do not count). `max_sig` must be at
/// most 19 so the result fits a u64.
///
/// The hot path accumulates with wrapping arithmetic, which compiles to two
/// `lea` per digit instead of a checked multiply; overflow is ruled out by
/// the digit count, checked only for unusually long runs.
#[inline]
fn digits_value(s: &[u8], max_sig: usize) -> Option<u64> {
    let fold = |s: &[u8]| s.iter().fold(0u64, |v, &b| v.wrapping_mul(10).wrapping_add((b - b'0') as u64));
    if s.len() <= max_sig {
        return Some(fold(s));
    }
    let sig = &s[s.iter().take_while(|&&b| b == b'0').count()..];
    (sig.len() <= max_sig).then(|| fold(sig))
}

/// Parses ASCII digits (no sign) into a u64.
#[inline]
fn parse_uint(s: &[u8]) -> Result<u64, UintError> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(UintError::NotDigits);
    }
    digits_value(s, 19).ok_or(UintError::Overflow)
}

/// Parses `at_s` (`DIGITS [ "." DIGITS ]`) into milliseconds with integer
/// arithmetic only, so the same text always gives the same time on every
/// platform. Fraction digits past the third round half up.
fn parse_at_ms(b: &[u8]) -> Result<u64, String> {
    // Messages are built only on error, so the hot path never touches text.
    let invalid = || format!("at_s: \"{}\" is not a non-negative decimal number of seconds", show(b));
    let digit = |i: usize| b.get(i).and_then(|&c| c.is_ascii_digit().then(|| (c - b'0') as u64));
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    // More than 13 significant digits gives u64::MAX: far above AT_S_MAX either way.
    let secs = digits_value(&b[..i], 13).unwrap_or(u64::MAX);
    if i == 0 {
        return Err(match b.first() {
            None => "at_s: empty".into(),
            Some(b'-') => format!("at_s: \"{}\" is negative", show(b)),
            Some(_) => invalid(),
        });
    }
    let mut ms = 0u64;
    let mut round_up = false;
    if i < b.len() {
        if b[i] != b'.' {
            return Err(invalid());
        }
        i += 1;
        let frac_start = i;
        while let Some(d) = digit(i) {
            match i - frac_start {
                0..=2 => ms = ms * 10 + d,
                3 => round_up = d >= 5,
                _ => {}
            }
            i += 1;
        }
        let frac_len = i - frac_start;
        if frac_len == 0 || i < b.len() {
            return Err(invalid());
        }
        for _ in frac_len..3 {
            ms *= 10;
        }
    }
    if secs > AT_S_MAX || secs * 1000 + ms + round_up as u64 > AT_S_MAX * 1000 {
        return Err(format!("at_s: \"{}\" exceeds the maximum of {AT_S_MAX} s", show(b)));
    }
    Ok(secs * 1000 + ms + round_up as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const HEADER: &str = "at_s,server,action,ram_mb,plan,players\n";

    fn reader(text: &str) -> Result<TraceReader<&[u8]>, TraceError> {
        TraceReader::new("t.csv", text.as_bytes())
    }

    /// (line, at_ms, server, action, ram_mb, plan, players)
    type Owned = (u64, u64, String, Action, u32, TracePlan, u32);

    /// Reads everything, returning rows as owned tuples and errors as strings.
    fn read_all(text: &str) -> Vec<Result<Owned, String>> {
        let mut r = reader(text).expect("header");
        let mut out = Vec::new();
        while let Some(res) = r.next_row() {
            out.push(
                res.map(|x| (x.line, x.at_ms, x.server.to_string(), x.action, x.ram_mb, x.plan, x.players))
                    .map_err(|e| e.to_string()),
            );
        }
        out
    }

    /// The single error of a one-data-row trace.
    fn row_err(body: &str) -> String {
        let text = format!("{HEADER}{body}\n");
        let res = read_all(&text);
        assert_eq!(res.len(), 1, "{res:?}");
        res[0].clone().unwrap_err()
    }

    fn header_err(text: &str) -> String {
        reader(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_valid_rows() {
        let text = format!(
            "{HEADER}0,s1,start,4096,,\n1.5,s1,players,,,7\n2.25,s2,start,8192,balanced,\n2.25,s3,start,16384,reserved,\n3600,s1,stop,,,\n"
        );
        let rows: Vec<_> = read_all(&text).into_iter().map(Result::unwrap).collect();
        assert_eq!(
            rows,
            vec![
                (2, 0, "s1".into(), Action::Start, 4096, TracePlan::PayPerPlay, 0),
                (3, 1500, "s1".into(), Action::Players, 0, TracePlan::PayPerPlay, 7),
                (4, 2250, "s2".into(), Action::Start, 8192, TracePlan::Balanced, 0),
                (5, 2250, "s3".into(), Action::Start, 16384, TracePlan::Reserved, 0),
                (6, 3_600_000, "s1".into(), Action::Stop, 0, TracePlan::PayPerPlay, 0),
            ]
        );
    }

    #[test]
    fn columns_in_any_order_extra_ignored_optional_missing() {
        let text = "note, action ,server,at_s,ram_mb\nhello,start,a,1,512\nx,stop,a,2,\n";
        let rows: Vec<_> = read_all(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(rows[0], (2, 1000, "a".into(), Action::Start, 512, TracePlan::PayPerPlay, 0));
        assert_eq!(rows[1], (3, 2000, "a".into(), Action::Stop, 0, TracePlan::PayPerPlay, 0));
    }

    #[test]
    fn header_errors() {
        assert_eq!(header_err(""), "t.csv:1: header: missing (the file is empty)");
        assert_eq!(
            header_err("\nat_s,server,action\n"),
            "t.csv:1: header: expected a header row on line 1, found a blank line"
        );
        assert_eq!(header_err("at_s,server\n"), "t.csv:1: header: missing required column \"action\"");
        assert_eq!(header_err("server,action\n"), "t.csv:1: header: missing required column \"at_s\"");
        assert_eq!(header_err("at_s,action\n"), "t.csv:1: header: missing required column \"server\"");
        assert_eq!(header_err("at_s,server,action,server\n"), "t.csv:1: header: duplicate column \"server\"");
        assert_eq!(header_err("at_s,server,action,x,x\n"), "t.csv:1: header: duplicate column \"x\"");
        assert_eq!(header_err("at_s,\"server\",action\n"), format!("t.csv:1: {QUOTE_MESSAGE}"));
        assert_eq!(
            header_err("at_s,server,action,ram_mb\r1,a,start,1024\r2,a,stop,\r"),
            "t.csv:1: header: a carriage return inside the line (lines must end in \\n or \\r\\n, not \\r alone)"
        );
        let bad = TraceReader::new("t.csv", &b"at_s,server,\xffaction\n"[..]).unwrap_err();
        assert_eq!(bad.to_string(), "t.csv:1: invalid UTF-8 at byte 13");
    }

    #[test]
    fn header_bom_and_crlf_and_empty_columns_accepted() {
        let text = "\u{feff}at_s,server,action,,\r\n1,a,stop,,\r\n";
        let rows = read_all(text);
        assert_eq!(rows[0].clone().unwrap().1, 1000);
    }

    #[test]
    fn header_only_is_empty_trace() {
        let mut r = reader("at_s,server,action").unwrap();
        assert!(r.next_row().is_none());
        assert!(r.next_row().is_none());
        assert_eq!(r.line(), 1);
    }

    #[test]
    fn at_s_conversion() {
        let cases = [
            ("0", 0),
            ("12", 12_000),
            ("12.5", 12_500),
            ("0.001", 1),
            ("0.0004", 0),
            ("0.0005", 1),
            ("0.00049999", 0),
            ("1.9995", 2_000),
            ("007.250", 7_250),
            ("34560000", 34_560_000_000),
            ("34559999.9999", 34_560_000_000),
            ("  3.25 ", 3_250),
        ];
        for (s, want) in cases {
            let text = format!("{HEADER}{s},a,stop,,,\n");
            let got = read_all(&text)[0].clone().unwrap_or_else(|e| panic!("{s}: {e}")).1;
            assert_eq!(got, want, "{s}");
        }
    }

    #[test]
    fn at_s_errors() {
        assert_eq!(row_err("-1,a,stop,,,"), "t.csv:2: at_s: \"-1\" is negative");
        assert_eq!(row_err(",a,stop,,,"), "t.csv:2: at_s: empty");
        for bad in ["1e3", "nan", "inf", "+1", "1.", ".5", "1.2.3", "0x10", "1 2", "١"] {
            assert_eq!(
                row_err(&format!("{bad},a,stop,,,")),
                format!("t.csv:2: at_s: \"{bad}\" is not a non-negative decimal number of seconds"),
            );
        }
        for big in ["34560000.0005", "34560001", "1000000000000", "99999999999999999999999999"] {
            assert_eq!(
                row_err(&format!("{big},a,stop,,,")),
                format!("t.csv:2: at_s: \"{big}\" exceeds the maximum of 34560000 s"),
            );
        }
    }

    #[test]
    fn server_rules() {
        assert_eq!(row_err("1, ,stop,,,"), "t.csv:2: server: empty");
        let long = "x".repeat(129);
        assert_eq!(
            row_err(&format!("1,{long},stop,,,")),
            "t.csv:2: server: 129 bytes is longer than the maximum of 128"
        );
        let ok = "y".repeat(128);
        let rows = read_all(&format!("{HEADER}1, {ok} ,stop,,,\n"));
        assert_eq!(rows[0].clone().unwrap().2, ok);
    }

    #[test]
    fn action_rules() {
        assert_eq!(row_err("1,a,,,,"), "t.csv:2: action: empty");
        assert_eq!(row_err("1,a,Start,,,"), "t.csv:2: action: \"Start\" is not one of start, stop, players");
    }

    #[test]
    fn ram_mb_rules() {
        assert_eq!(row_err("1,a,start,abc,,"), "t.csv:2: ram_mb: \"abc\" is not a positive integer");
        assert_eq!(row_err("1,a,start,-5,,"), "t.csv:2: ram_mb: \"-5\" is not a positive integer");
        assert_eq!(row_err("1,a,start,,,"), "t.csv:2: ram_mb: empty, but required on start rows");
        assert_eq!(row_err("1,a,start,0,,"), "t.csv:2: ram_mb: \"0\" is out of range 1..=1048576");
        assert_eq!(row_err("1,a,start,1048577,,"), "t.csv:2: ram_mb: \"1048577\" is out of range 1..=1048576");
        assert_eq!(
            row_err("1,a,start,99999999999999999999999,,"),
            "t.csv:2: ram_mb: \"99999999999999999999999\" is out of range 1..=1048576"
        );
        let rows = read_all(&format!("{HEADER}1,a,start,1048576,,\n2,a,stop,junk,,\n"));
        assert_eq!(rows[0].clone().unwrap().4, 1_048_576);
        assert_eq!(rows[1].clone().unwrap().4, 0, "ram_mb ignored on stop rows");
        let no_col = read_all("at_s,server,action\n1,a,start\n");
        assert_eq!(
            no_col[0].clone().unwrap_err(),
            "t.csv:2: ram_mb: required on start rows, but the header has no ram_mb column"
        );
    }

    #[test]
    fn plan_rules() {
        assert_eq!(
            row_err("1,a,start,1,gold,"),
            "t.csv:2: plan: \"gold\" is not one of payperplay, balanced, reserved"
        );
        let rows = read_all(&format!(
            "{HEADER}1,a,start,1,payperplay,\n1,b,start,1, reserved ,\n1,c,start,1,,\n2,a,players,,gold,3\n"
        ));
        let plans: Vec<_> = rows.into_iter().map(|r| r.unwrap().5).collect();
        assert_eq!(plans, [TracePlan::PayPerPlay, TracePlan::Reserved, TracePlan::PayPerPlay, TracePlan::PayPerPlay]);
    }

    #[test]
    fn players_rules() {
        assert_eq!(row_err("1,a,players,,,"), "t.csv:2: players: empty, but required on players rows");
        assert_eq!(row_err("1,a,players,,,x1"), "t.csv:2: players: \"x1\" is not a non-negative integer");
        assert_eq!(row_err("1,a,players,,,100001"), "t.csv:2: players: \"100001\" is out of range 0..=100000");
        let rows = read_all(&format!("{HEADER}1,a,players,,,0\n2,a,players,,,100000\n3,a,start,5,,77\n"));
        let p: Vec<_> = rows.into_iter().map(|r| r.unwrap().6).collect();
        assert_eq!(p, [0, 100_000, 0]);
        let no_col = read_all("at_s,server,action\n1,a,players\n");
        assert_eq!(
            no_col[0].clone().unwrap_err(),
            "t.csv:2: players: required on players rows, but the header has no players column"
        );
    }

    #[test]
    fn order_rule_and_equal_times() {
        let res = read_all(&format!("{HEADER}12,a,stop,,,\n12,b,stop,,,\n10,c,stop,,,\n13,d,stop,,,\n"));
        assert!(res[0].is_ok() && res[1].is_ok() && res[3].is_ok());
        assert_eq!(
            res[2].clone().unwrap_err(),
            "t.csv:4: row time 10.000 s is earlier than the previous row's 12.000 s"
        );
    }

    #[test]
    fn blank_lines_counted_and_crlf() {
        let text = format!("{HEADER}\n   \n\r\n1,a,stop,,,\r\n\t\r\n2,a,bad,,,\r\n");
        let res = read_all(&text);
        assert_eq!(res.len(), 2);
        assert_eq!(res[0].clone().unwrap().0, 5);
        assert_eq!(res[1].clone().unwrap_err(), "t.csv:7: action: \"bad\" is not one of start, stop, players");
    }

    #[test]
    fn quotes_and_cell_count() {
        assert_eq!(row_err("1,\"a\",stop,,,"), format!("t.csv:2: {QUOTE_MESSAGE}"));
        assert_eq!(row_err("1,a,stop"), "t.csv:2: expected 6 cells (as in the header), found 3");
        assert_eq!(row_err("1,a,stop,,,,"), "t.csv:2: expected 6 cells (as in the header), found 7");
    }

    #[test]
    fn line_length_limit() {
        // Exactly LINE_LEN_MAX bytes (padding lands in an ignored column) is fine, with or without \r.
        let head = "at_s,server,action,pad\n";
        let base = "1,a,stop,";
        let line = format!("{base}{}", "p".repeat(LINE_LEN_MAX - base.len()));
        assert_eq!(line.len(), LINE_LEN_MAX);
        let ok = read_all(&format!("{head}{line}\n{line}\r\n"));
        assert!(ok.iter().all(Result::is_ok), "{ok:?}");
        let long = format!("{line}p");
        let res = read_all(&format!("{head}{long}\n2,a,stop,\n"));
        assert_eq!(res[0].clone().unwrap_err(), "t.csv:2: line is longer than 4096 bytes");
        assert_eq!(res[1].clone().unwrap().0, 3, "reading goes on after an over-long line");
        // A huge line without newline does not grow the buffer beyond the limit.
        let huge = format!("{head}{}", "z".repeat(1 << 20));
        let mut r = reader(&huge).unwrap();
        assert_eq!(r.next_row().unwrap().unwrap_err().to_string(), "t.csv:2: line is longer than 4096 bytes");
        assert!(r.buf.capacity() < 2 * LINE_LEN_MAX);
        assert!(r.next_row().is_none());
        let long_header = format!("{}\n", "h".repeat(LINE_LEN_MAX + 1));
        assert_eq!(header_err(&long_header), "t.csv:1: line is longer than 4096 bytes");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut data = HEADER.as_bytes().to_vec();
        data.extend_from_slice(b"1,s\xc3\x28,stop,,,\n2,b,stop,,,\n");
        let mut r = TraceReader::new("t.csv", &data[..]).unwrap();
        assert_eq!(r.next_row().unwrap().unwrap_err().to_string(), "t.csv:2: invalid UTF-8 at byte 4");
        assert_eq!(r.next_row().unwrap().unwrap().server, "b");
    }

    /// A reader that fails after some bytes, to check read errors.
    struct Failing<'a>(&'a [u8]);
    impl std::io::Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn read_errors_end_the_stream() {
        let data = format!("{HEADER}1,a,stop,,,\n2,b,st");
        let mut r = TraceReader::new("t.csv", std::io::BufReader::with_capacity(8, Failing(data.as_bytes()))).unwrap();
        assert!(r.next_row().unwrap().is_ok());
        assert_eq!(r.next_row().unwrap().unwrap_err().to_string(), "t.csv:3: read error: disk on fire");
        assert!(r.next_row().is_none());
        let e = TraceReader::new("t.csv", std::io::BufReader::new(Failing(b""))).unwrap_err();
        assert_eq!(e.to_string(), "t.csv:1: read error: disk on fire");
    }

    #[test]
    fn open_reports_missing_file_and_reads_real_file() {
        let e = open(std::path::Path::new("/nonexistent/trace.csv")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/trace.csv:0: cannot open: "), "{e}");
        let path = std::env::temp_dir().join(format!("trace-dev-open-{}.csv", std::process::id()));
        std::fs::write(&path, format!("{HEADER}1,a,start,2048,,\n")).unwrap();
        let mut r = open(&path).unwrap();
        assert_eq!(r.next_row().unwrap().unwrap().ram_mb, 2048);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn newline_search_matches_naive() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..2000 {
            let len = rng.random_range(0..40);
            let v: Vec<u8> =
                (0..len).map(|_| if rng.random_range(0..10) == 0 { b'\n' } else { rng.random() }).collect();
            assert_eq!(find_newline(&v), v.iter().position(|&b| b == b'\n'));
        }
    }

    /// Random valid traces with shuffled and extra columns, random padding
    /// and long cells read back exactly as built (checks the word-at-a-time
    /// splitting against the rows' construction).
    #[test]
    fn random_layouts_round_trip() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x1A70);
        let junk = b"abcxyz019_-.:;!/ ";
        for _ in 0..300 {
            let extra = rng.random_range(0..12);
            let mut names: Vec<String> =
                ["at_s", "server", "action", "ram_mb", "plan", "players"].map(String::from).to_vec();
            names.extend((0..extra).map(|k| format!("x{k}")));
            for i in (1..names.len()).rev() {
                names.swap(i, rng.random_range(0..=i));
            }
            let mut text = names.join(",") + "\n";
            let mut want = Vec::new();
            let mut at = 0u64;
            for line in 2..40u64 {
                if rng.random_range(0..8) == 0 {
                    text.push_str(if rng.random() { "\n" } else { "  \r\n" });
                    continue;
                }
                at += rng.random_range(0..5000);
                let server: String =
                    (0..rng.random_range(1..40)).map(|_| junk[rng.random_range(0..junk.len() - 1)] as char).collect();
                let server = server.trim().to_string();
                let server = if server.is_empty() { "s".to_string() } else { server };
                let action = [Action::Start, Action::Stop, Action::Players][rng.random_range(0..3)];
                let ram = rng.random_range(1..=RAM_MB_MAX);
                let plan = [TracePlan::PayPerPlay, TracePlan::Balanced, TracePlan::Reserved][rng.random_range(0..3)];
                let players = rng.random_range(0..=PLAYERS_MAX);
                let cells: Vec<String> = names
                    .iter()
                    .map(|n| {
                        let v = match n.as_str() {
                            "at_s" => format!("{}.{:03}", at / 1000, at % 1000),
                            "server" => server.clone(),
                            "action" => ["start", "stop", "players"][action as usize].to_string(),
                            "ram_mb" => ram.to_string(),
                            "plan" => ["payperplay", "balanced", "reserved"][plan as usize].to_string(),
                            "players" => players.to_string(),
                            _ => (0..rng.random_range(0..30))
                                .map(|_| junk[rng.random_range(0..junk.len())] as char)
                                .collect(),
                        };
                        let pad = |rng: &mut ChaCha8Rng| " ".repeat(rng.random_range(0..3));
                        format!("{}{v}{}", pad(&mut rng), pad(&mut rng))
                    })
                    .collect();
                text.push_str(&cells.join(","));
                text.push_str(if rng.random() { "\n" } else { "\r\n" });
                let (ram_mb, plan, players) = match action {
                    Action::Start => (ram, plan, 0),
                    Action::Stop => (0, TracePlan::PayPerPlay, 0),
                    Action::Players => (0, TracePlan::PayPerPlay, players),
                };
                want.push(Ok((line, at, server, action, ram_mb, plan, players)));
            }
            assert_eq!(read_all(&text), want, "{text}");
        }
    }

    #[test]
    fn comma_bits_gathers_each_byte() {
        for x in 0..256u64 {
            let w = (0..8).fold(0u64, |w, j| w | (if x >> j & 1 == 1 { b',' } else { b'a' } as u64) << (8 * j));
            assert_eq!(comma_bits(w), x);
        }
        // Bytes that differ from ',' by one bit, or by the high bit, are not commas.
        for b in 0..=255u8 {
            assert_eq!(comma_bits(ONES * b as u64) != 0, b == b',', "{b}");
        }
    }

    /// Random bytes and random mutations of a valid trace must never panic.
    #[test]
    fn fuzz_no_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
        let valid = format!(
            "{HEADER}0,s1,start,4096,balanced,\n1.5,s1,players,,,7\n\n2.0005,s2,start,8192,reserved,\r\n3600,s1,stop,,,\n"
        )
        .into_bytes();
        let alphabet = b"0123456789.,-\"\r\n \tabcdefghijklmnopqrstuvwxyz_e\xff\xc3";
        let (mut oks, mut errs) = (0usize, 0usize);
        let mut run = |data: &[u8]| match TraceReader::new("f", data) {
            Err(_) => errs += 1,
            Ok(mut r) => {
                let mut n = 0;
                while let Some(res) = r.next_row() {
                    match res {
                        Ok(_) => oks += 1,
                        Err(_) => errs += 1,
                    }
                    n += 1;
                    assert!(n < 100_000);
                }
            }
        };
        for _ in 0..3000 {
            let len = rng.random_range(0..200);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            run(&data);
            let data: Vec<u8> = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            run(&data);
            let mut m = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..m.len());
                match rng.random_range(0..3) {
                    0 => m[i] = alphabet[rng.random_range(0..alphabet.len())],
                    1 => {
                        m.remove(i);
                    }
                    _ => m.insert(i, alphabet[rng.random_range(0..alphabet.len())]),
                }
                if m.is_empty() {
                    break;
                }
            }
            run(&m);
        }
        assert!(oks > 0 && errs > 0, "oks={oks} errs={errs}");
    }
}
