//! Per-message bookkeeping of a raw load run: for every send (sender, seq), whether the server
//! accepted it and how many of its expected deliveries arrived. This is what makes `lost` mean
//! "ACCEPTED and never delivered", and what tells a repeat from a first delivery. Settled
//! messages (failed, or accepted and delivered everywhere) are pruned from the front of each
//! sender's log, so memory follows what is still open, not the length of the run.

use std::collections::VecDeque;

/// What the ledger knows about one send.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    answer: Answer,
    /// Distinct deliveries so far (one per recipient device).
    deliveries: u16,
    /// Slowest of those deliveries, in microseconds (for "every member has it" times).
    slowest_us: u32,
}

/// The server's answer to a send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Answer {
    /// Written, not answered yet.
    #[default]
    Pending,
    /// ACCEPTED: durable, must be delivered.
    Accepted,
    /// Answered with an error: never stored, never delivered.
    Failed,
}

/// The sends of one sender, by seq (seqs start at 1 and are dense).
#[derive(Debug, Default)]
struct SenderLog {
    /// Seq of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
}

/// What a delivery meant to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A first delivery to one more recipient; `Some(slowest_ns)` when it was the last
    /// recipient the message was waiting for.
    New(Option<u64>),
    /// More deliveries than recipients, or of a message already settled: a repeat.
    Repeat,
    /// A message this run never sent (another run's, or a corrupt payload).
    Unknown,
}

/// Per-message state of every sender of a run, plus running totals.
#[derive(Debug)]
pub struct Ledger {
    senders: Vec<SenderLog>,
    /// Deliveries each accepted message must reach (1:1: 1; a group: members − 1).
    expected: u16,
    /// Sends written and not answered yet.
    outstanding: u64,
    /// Accepted sends.
    accepted: u64,
    /// Deliveries still owed to accepted messages.
    owed: u64,
}

impl Ledger {
    /// A ledger for `senders` senders whose accepted messages are each delivered `expected`
    /// times.
    pub fn new(senders: usize, expected: u16) -> Self {
        let log = || SenderLog { base: 1, entries: VecDeque::new() };
        Self { senders: (0..senders).map(|_| log()).collect(), expected, outstanding: 0, accepted: 0, owed: 0 }
    }

    /// Records a new send of `sender` and returns its seq.
    pub fn on_sent(&mut self, sender: usize) -> u64 {
        let log = &mut self.senders[sender];
        log.entries.push_back(Entry::default());
        self.outstanding += 1;
        log.base + log.entries.len() as u64 - 1
    }

    /// Records the answer to send `seq` of `sender`; false if no such send is pending.
    pub fn on_answer(&mut self, sender: usize, seq: u64, accepted: bool) -> bool {
        let Some(entry) = self.entry(sender, seq) else { return false };
        if entry.answer != Answer::Pending {
            return false;
        }
        let early = entry.deliveries;
        entry.answer = if accepted { Answer::Accepted } else { Answer::Failed };
        self.outstanding -= 1;
        if accepted {
            self.accepted += 1;
            // Deliveries can arrive before the sender hears ACCEPTED (both follow the commit).
            self.owed += u64::from(self.expected.saturating_sub(early));
        }
        self.prune(sender);
        true
    }

    /// Records a delivery of send `seq` of `sender`, `latency_ns` after it was scheduled.
    pub fn on_delivered(&mut self, sender: usize, seq: u64, latency_ns: u64) -> Delivered {
        let expected = self.expected;
        let Some(log) = self.senders.get(sender) else { return Delivered::Unknown };
        if seq < log.base {
            return if seq == 0 { Delivered::Unknown } else { Delivered::Repeat };
        }
        let Some(entry) = self.entry(sender, seq) else { return Delivered::Unknown };
        if entry.answer == Answer::Failed || entry.deliveries >= expected {
            return Delivered::Repeat;
        }
        entry.deliveries += 1;
        entry.slowest_us = entry.slowest_us.max((latency_ns / 1_000).min(u64::from(u32::MAX)) as u32);
        let complete = (entry.deliveries == expected).then_some(u64::from(entry.slowest_us) * 1_000);
        if entry.answer == Answer::Accepted {
            self.owed -= 1;
        }
        self.prune(sender);
        Delivered::New(complete)
    }

    /// Sends written and not answered yet.
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Deliveries that accepted messages still owe (the backlog; after the drain, the loss).
    pub fn owed(&self) -> u64 {
        self.owed
    }

    /// Accepted messages with at least one delivery missing.
    pub fn undelivered_messages(&self) -> u64 {
        let open = |e: &&Entry| e.answer == Answer::Accepted && e.deliveries < self.expected;
        self.senders.iter().map(|log| log.entries.iter().filter(open).count() as u64).sum()
    }

    fn entry(&mut self, sender: usize, seq: u64) -> Option<&mut Entry> {
        let log = self.senders.get_mut(sender)?;
        let idx = usize::try_from(seq.checked_sub(log.base)?).ok()?;
        log.entries.get_mut(idx)
    }

    /// Drops settled messages from the front of a sender's log.
    fn prune(&mut self, sender: usize) {
        let expected = self.expected;
        let log = &mut self.senders[sender];
        while let Some(front) = log.entries.front() {
            let settled = match front.answer {
                Answer::Pending => false,
                Answer::Failed => true,
                Answer::Accepted => front.deliveries >= expected,
            };
            if !settled {
                break;
            }
            log.entries.pop_front();
            log.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_message_is_owed_until_delivered() {
        let mut l = Ledger::new(2, 1);
        let s = l.on_sent(0);
        assert_eq!((s, l.outstanding()), (1, 1));
        assert!(l.on_answer(0, s, true));
        assert_eq!((l.outstanding(), l.owed(), l.undelivered_messages()), (0, 1, 1));
        assert_eq!(l.on_delivered(0, s, 5_000), Delivered::New(Some(5_000)));
        assert_eq!((l.owed(), l.undelivered_messages()), (0, 0));
        assert_eq!(l.on_delivered(0, s, 6_000), Delivered::Repeat, "settled and pruned: a repeat");
    }

    #[test]
    fn a_delivery_before_the_answer_is_not_owed_again() {
        let mut l = Ledger::new(1, 1);
        let s = l.on_sent(0);
        assert_eq!(l.on_delivered(0, s, 1_000), Delivered::New(Some(1_000)));
        assert!(l.on_answer(0, s, true));
        assert_eq!(l.owed(), 0);
    }

    #[test]
    fn failed_sends_are_never_owed_and_group_messages_complete_at_the_last_member() {
        let mut l = Ledger::new(1, 3);
        let (a, b) = (l.on_sent(0), l.on_sent(0));
        assert!(l.on_answer(0, a, false));
        assert_eq!(l.on_delivered(0, a, 1), Delivered::Repeat);
        assert!(l.on_answer(0, b, true));
        assert_eq!(l.owed(), 3);
        assert_eq!(l.on_delivered(0, b, 2_000_000), Delivered::New(None));
        assert_eq!(l.on_delivered(0, b, 9_000_000), Delivered::New(None));
        assert_eq!(l.on_delivered(0, b, 4_000_000), Delivered::New(Some(9_000_000)));
        assert_eq!(l.owed(), 0);
        assert_eq!(l.on_delivered(0, 99, 1), Delivered::Unknown);
        assert_eq!(l.on_delivered(5, 1, 1), Delivered::Unknown);
    }

    #[test]
    fn settled_messages_are_pruned_so_memory_follows_what_is_open() {
        let mut l = Ledger::new(1, 1);
        for _ in 0..1000 {
            let s = l.on_sent(0);
            l.on_answer(0, s, true);
            l.on_delivered(0, s, 1);
        }
        assert!(l.senders[0].entries.is_empty());
        assert_eq!(l.senders[0].base, 1001);
        assert!(!l.on_answer(0, 1, true), "an answer to a settled send is refused");
    }
}
