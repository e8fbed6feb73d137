//! The debug log: a bounded ring of the last fleet decisions and failures, O(1) insert.
//! Events are kept structured and only formatted when someone reads the log.

use crate::io::Event;
use crate::time::Millis;

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
    /// A ring: once full, `head` is the oldest entry and a new one overwrites it in
    /// place (one move, not a pop and a push).
    entries: Vec<LogEntry>,
    head: usize,
    cap: usize,
}

impl DebugLog {
    pub fn new(cap: usize) -> DebugLog {
        DebugLog { entries: Vec::with_capacity(cap), head: 0, cap }
    }

    pub fn add(&mut self, at: Millis, level: &'static str, text: String) {
        self.push(LogEntry { at, level, message: LogMessage::Text(text) });
    }

    pub fn event(&mut self, at: Millis, e: &Event) {
        // The log is for the fleet's decisions (scaling, health, provisioning, moves) and for
        // what went wrong. A server's routine life (queued, placed, started, stopped, its
        // world's whereabouts) happens thousands of times an hour on a large fleet and would
        // push every decision out of a 200-entry log within seconds; the event stream and
        // the journal keep it. (The original's debug log held only fleet decisions too.)
        if matches!(
            e,
            Event::Queued { .. }
                | Event::Placed { .. }
                | Event::Started { .. }
                | Event::Cancelled { .. }
                | Event::Stopped { .. }
                | Event::WorldOn { .. }
                | Event::WorldArchived { .. }
        ) {
            return;
        }
        self.push(LogEntry { at, level: "info", message: LogMessage::Event(e.clone()) });
    }

    fn push(&mut self, e: LogEntry) {
        if self.entries.len() < self.cap {
            self.entries.push(e);
        } else if self.cap > 0 {
            self.entries[self.head] = e;
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// Oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &LogEntry> {
        let (newer, older) = self.entries.split_at(self.head);
        older.iter().chain(newer)
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
    use crate::model::{NodeId, ServerId};

    #[test]
    fn keeps_decisions_and_failures_not_a_servers_routine_life() {
        let mut log = DebugLog::new(10);
        let (server, node) = (ServerId(1), NodeId(2));
        log.event(Millis(1), &Event::Started { server, node });
        log.event(Millis(2), &Event::Queued { server, position: 1 });
        assert!(log.is_empty());
        log.event(Millis(3), &Event::ServerLost { server, node });
        log.event(Millis(4), &Event::NodeProvisioned { node });
        let at: Vec<u64> = log.entries().map(|e| e.at.0).collect();
        assert_eq!(at, vec![3, 4]);
    }

    #[test]
    fn keeps_the_newest_entries_up_to_its_capacity() {
        let mut log = DebugLog::new(3);
        for i in 0..5 {
            log.add(Millis(i), "info", format!("m{i}"));
        }
        let at: Vec<u64> = log.entries().map(|e| e.at.0).collect();
        assert_eq!(at, vec![2, 3, 4]);
        let newest_first: Vec<u64> = log.entries().rev().map(|e| e.at.0).collect();
        assert_eq!(newest_first, vec![4, 3, 2]);
        assert_eq!(log.len(), 3);
        // Before it fills, and after wrapping exactly once round.
        let mut log = DebugLog::new(3);
        log.add(Millis(0), "info", "a".into());
        assert_eq!(log.entries().map(|e| e.at.0).collect::<Vec<_>>(), vec![0]);
        for i in 1..6 {
            log.add(Millis(i), "info", format!("m{i}"));
        }
        assert_eq!(log.entries().map(|e| e.at.0).collect::<Vec<_>>(), vec![3, 4, 5]);
    }
}
