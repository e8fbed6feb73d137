//! The debug log: a bounded ring of the last decisions, O(1) insert. Events are kept
//! structured and only formatted when someone reads the log.

use crate::io::Event;
use crate::time::Millis;
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq)]
pub enum LogMessage {
    Event(Event),
    Text(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub at: Millis,
    pub level: &'static str,
    pub message: LogMessage,
}

pub struct DebugLog {
    entries: VecDeque<LogEntry>,
    cap: usize,
}

impl DebugLog {
    pub fn new(cap: usize) -> DebugLog {
        DebugLog { entries: VecDeque::with_capacity(cap), cap }
    }

    pub fn add(&mut self, at: Millis, level: &'static str, text: String) {
        self.push(LogEntry { at, level, message: LogMessage::Text(text) });
    }

    pub fn event(&mut self, at: Millis, e: &Event) {
        // Player-facing churn (queue positions) would push decisions out of a 200-entry log.
        if matches!(e, Event::Queued { .. }) {
            return;
        }
        self.push(LogEntry { at, level: "info", message: LogMessage::Event(e.clone()) });
    }

    fn push(&mut self, e: LogEntry) {
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(e);
    }

    /// Oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &LogEntry> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_up_to_its_capacity() {
        let mut log = DebugLog::new(3);
        for i in 0..5 {
            log.add(Millis(i), "info", format!("m{i}"));
        }
        let at: Vec<u64> = log.entries().map(|e| e.at.0).collect();
        assert_eq!(at, vec![2, 3, 4]);
    }
}
