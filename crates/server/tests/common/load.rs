//! A write load for fault tests: writers putting distinct keys under
//! `load/`, the keys acknowledged, and the longest wait for one put.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long [`Load::progress`] waits for the writes it asks for.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

/// Writers, each on its own client, and what they saw.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    longest: Arc<Mutex<Duration>>,
    writers: Vec<JoinHandle<()>>,
}

impl Load {
    /// One writer per endpoint (an endpoint may be named twice), writer
    /// `w` putting `load/<w>/<n>`. A put that fails or takes over six
    /// seconds is not acknowledged, and the writer goes on with its next
    /// key.
    pub async fn start(endpoints: Vec<String>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let longest: Arc<Mutex<Duration>> = Arc::default();
        let mut writers = Vec::new();
        for (w, endpoint) in endpoints.into_iter().enumerate() {
            let mut client = super::connect(vec![endpoint]).await;
            let (stop, acked, longest) = (stop.clone(), acked.clone(), longest.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("load/{w}/{i:06}");
                    i += 1;
                    let started = Instant::now();
                    let result = tokio::time::timeout(Duration::from_secs(6), client.put(key.clone(), "v", None)).await;
                    {
                        let mut l = longest.lock().unwrap();
                        *l = (*l).max(started.elapsed());
                    }
                    match result {
                        Ok(Ok(_)) => acked.lock().unwrap().push(key),
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }));
        }
        Load { stop, acked, longest, writers }
    }

    /// How many writes were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The longest wait for one put since the last call, and reset.
    pub fn take_longest(&self) -> Duration {
        std::mem::take(&mut *self.longest.lock().unwrap())
    }

    /// Waits until `n` more writes than now are acknowledged; fails the
    /// test, naming `what`, if they are not within 30 seconds.
    pub async fn progress(&self, n: usize, what: &str) {
        let target = self.acked() + n;
        let deadline = Instant::now() + PROGRESS_DEADLINE;
        while self.acked() < target {
            assert!(Instant::now() < deadline, "{what}: only {} of {target} writes acknowledged", self.acked());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the writers; returns every acknowledged key.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}
