//! A run's per-second timeline: how many requests completed in each second
//! and how long they took, for plots of throughput and latency over time.
//!
//! A request counts in the second its answer (or its error) arrived,
//! counted from the run's start. Each load task fills a [`SecondBucket`] of
//! its own and hands it to the run's shared [`Timeline`] only when its
//! clock moves on to a later second (and once at the end), so the hot path
//! takes a lock about once a second per task, not once a request. Buckets
//! keep latencies to 2 significant digits (1%), about 12 KB per second of
//! run. This module only sorts what it is given into seconds: whether a
//! request succeeded is the load task's call.

use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::record::Interval;

/// Slowest latency told apart, in microseconds (10 minutes, as the run's
/// own histogram); anything slower counts as this.
const MAX_MICROS: u64 = 600_000_000;

/// The requests of one second (of one task, or of all tasks together).
#[derive(Clone)]
pub struct Bucket {
    latencies: Histogram<u32>,
    errors: u64,
}

impl Bucket {
    /// An empty bucket.
    pub fn new() -> Bucket {
        Bucket {
            latencies: Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("constant histogram bounds are valid"),
            errors: 0,
        }
    }

    /// A request that succeeded after `micros`.
    pub fn record(&mut self, micros: u64) {
        self.latencies.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// A request that failed or timed out.
    pub fn error(&mut self) {
        self.errors += 1;
    }

    fn is_empty(&self) -> bool {
        self.latencies.is_empty() && self.errors == 0
    }

    fn add(&mut self, other: &Bucket) {
        // Same bounds and precision on both sides, so adding cannot fail.
        self.latencies.add(&other.latencies).expect("buckets share bounds");
        self.errors += other.errors;
    }
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::new()
    }
}

/// Every second of a run, all tasks together.
#[derive(Default)]
pub struct Timeline {
    /// Index: whole seconds since the run's start.
    seconds: Vec<Bucket>,
}

impl Timeline {
    /// Adds what some task saw in `second` to that second.
    pub fn add(&mut self, second: usize, bucket: &Bucket) {
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Bucket::new);
        }
        self.seconds[second].add(bucket);
    }

    /// One interval per second of a run that lasted `seconds` (from its
    /// start to its last completion), none skipped, the last one cut short
    /// where the run ended.
    pub fn intervals(&self, seconds: f64) -> Vec<Interval> {
        let whole = if seconds.is_finite() && seconds > 0.0 { seconds.ceil() as usize } else { 0 };
        let empty = Bucket::new();
        let ms = |micros: u64| micros as f64 / 1000.0;
        (0..whole.max(self.seconds.len()))
            .map(|second| {
                let bucket = self.seconds.get(second).unwrap_or(&empty);
                let span_s = (seconds - second as f64).clamp(0.0, 1.0);
                let ops = bucket.latencies.len();
                let quantile = |q: f64| (ops > 0).then(|| ms(bucket.latencies.value_at_quantile(q)));
                Interval {
                    second: second as u64,
                    span_s,
                    ops,
                    errors: bucket.errors,
                    throughput_ops_s: if span_s > 0.0 { ops as f64 / span_s } else { 0.0 },
                    p50_ms: quantile(0.50),
                    p99_ms: quantile(0.99),
                    max_ms: (ops > 0).then(|| ms(bucket.latencies.max())),
                }
            })
            .collect()
    }
}

/// What one task has seen in the second it is in.
#[derive(Default)]
pub struct SecondBucket {
    second: usize,
    bucket: Bucket,
}

impl SecondBucket {
    /// Counts a request that completed in `second` (`Some(micros)` if it
    /// succeeded, `None` if it failed), first handing the bucket of an
    /// earlier second to `timeline`. A task's completions come in time
    /// order, so its clock never goes back.
    pub fn count(&mut self, second: usize, latency_micros: Option<u64>, timeline: &Mutex<Timeline>) {
        debug_assert!(second >= self.second, "a task's completions are in time order");
        if second != self.second {
            self.hand_over(timeline);
            self.second = second;
        }
        match latency_micros {
            Some(micros) => self.bucket.record(micros),
            None => self.bucket.error(),
        }
    }

    /// Hands what is left to `timeline`; the task is done.
    pub fn finish(mut self, timeline: &Mutex<Timeline>) {
        self.hand_over(timeline);
    }

    fn hand_over(&mut self, timeline: &Mutex<Timeline>) {
        if self.bucket.is_empty() {
            return;
        }
        // A task that panicked while holding the lock leaves whole seconds
        // behind it (add is all or nothing for a bucket), so go on.
        let mut timeline = timeline.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        timeline.add(self.second, &self.bucket);
        self.bucket = Bucket::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the buckets' 1% (a histogram reports the top of the range a
    /// value fell in).
    fn about(ms: Option<f64>, expected: f64) -> bool {
        ms.is_some_and(|ms| (ms - expected).abs() <= expected / 100.0)
    }

    fn bucket(latencies_micros: &[u64], errors: u64) -> Bucket {
        let mut bucket = Bucket::new();
        for &micros in latencies_micros {
            bucket.record(micros);
        }
        (0..errors).for_each(|_| bucket.error());
        bucket
    }

    #[test]
    fn requests_count_in_the_second_they_completed() {
        let timeline = Mutex::new(Timeline::default());
        let mut task = SecondBucket::default();
        task.count(0, Some(1_000), &timeline);
        task.count(0, Some(3_000), &timeline);
        task.count(2, Some(5_000), &timeline);
        task.count(2, None, &timeline);
        task.finish(&timeline);

        let intervals = timeline.into_inner().unwrap().intervals(3.0);
        let ops: Vec<u64> = intervals.iter().map(|i| i.ops).collect();
        let errors: Vec<u64> = intervals.iter().map(|i| i.errors).collect();
        assert_eq!(ops, [2, 0, 1]);
        assert_eq!(errors, [0, 0, 1]);
        assert!(about(intervals[0].max_ms, 3.0), "{:?}", intervals[0]);
        assert!(about(intervals[2].p50_ms, 5.0), "{:?}", intervals[2]);
    }

    #[test]
    fn a_second_with_no_completion_is_kept_with_no_latency() {
        let mut timeline = Timeline::default();
        timeline.add(0, &bucket(&[1_000], 0));
        timeline.add(2, &bucket(&[1_000], 0));
        let stalled = &timeline.intervals(3.0)[1];
        assert_eq!((stalled.second, stalled.ops, stalled.throughput_ops_s), (1, 0, 0.0));
        assert_eq!((stalled.p50_ms, stalled.p99_ms, stalled.max_ms), (None, None, None));
    }

    #[test]
    fn tasks_buckets_of_one_second_are_merged() {
        let mut timeline = Timeline::default();
        timeline.add(1, &bucket(&[1_000; 98], 1));
        timeline.add(1, &bucket(&[100_000; 2], 2));
        let second = &timeline.intervals(2.0)[1];
        assert_eq!((second.ops, second.errors), (100, 3));
        assert!(about(second.p50_ms, 1.0), "{second:?}");
        // 98 of 100 at 1 ms: the 99th percentile is one of the slow two.
        assert!(about(second.p99_ms, 100.0), "{second:?}");
    }

    #[test]
    fn the_last_interval_ends_with_the_run_and_its_rate_uses_its_span() {
        let mut timeline = Timeline::default();
        timeline.add(0, &bucket(&[1_000; 100], 0));
        timeline.add(1, &bucket(&[1_000; 10], 0));
        let intervals = timeline.intervals(1.25);
        assert_eq!(intervals.len(), 2);
        assert_eq!((intervals[0].span_s, intervals[0].throughput_ops_s), (1.0, 100.0));
        assert_eq!((intervals[1].span_s, intervals[1].throughput_ops_s), (0.25, 40.0));
    }

    #[test]
    fn a_run_with_nothing_recorded_still_has_its_seconds() {
        let intervals = Timeline::default().intervals(2.5);
        assert_eq!(intervals.len(), 3);
        assert!(intervals.iter().all(|i| i.ops == 0 && i.p50_ms.is_none()));
        assert!(Timeline::default().intervals(0.0).is_empty());
    }

    #[test]
    fn latencies_are_kept_to_one_percent() {
        let mut timeline = Timeline::default();
        timeline.add(0, &bucket(&[12_345], 0));
        let p50 = timeline.intervals(1.0)[0].p50_ms;
        assert!(about(p50, 12.345), "{p50:?}");
    }
}
