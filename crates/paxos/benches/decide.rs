//! Commands decided per second through three replicas in one process, with
//! no I/O: the cost of the protocol core alone, with batching on (many
//! commands per slot) and off (one command per slot).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use synod_paxos::local::LocalCluster;
use synod_paxos::{Command, CommandId, Config, Slot, StateMachine};

/// Counts applied commands; the cheapest possible state machine, so the
/// figure is the protocol's.
#[derive(Default)]
struct Counter(u64);

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, _slot: Slot, _c: &Command) -> u64 {
        self.0 += 1;
        self.0
    }
    fn query(&self, _q: &[u8]) -> u64 {
        self.0
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), synod_paxos::SnapshotError> {
        let b: [u8; 8] = s.try_into().map_err(|_| synod_paxos::SnapshotError("need 8 bytes".into()))?;
        self.0 = u64::from_be_bytes(b);
        Ok(())
    }
}

fn decide(c: &mut Criterion) {
    const N: u64 = 100_000;
    let payload = bytes::Bytes::from_static(b"0123456789abcdef");
    let mut group = c.benchmark_group("decide_3_replicas");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    for (name, max_batch) in [("batched", 4096usize), ("unbatched", 1)] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &max_batch, |b, &max_batch| {
            b.iter_batched(
                || {
                    let mut cl = LocalCluster::new(
                        3,
                        |id, m| Config { max_batch, max_inflight_slots: 256, ..Config::new(id, m) },
                        Counter::default,
                    );
                    cl.keep_records = false;
                    cl.tick(40);
                    cl
                },
                |mut cl| {
                    let leader = cl.leader().expect("leader");
                    let commands = (1..=N).map(|seq| Command {
                        id: CommandId { client: 1, seq },
                        origin: 0,
                        payload: payload.clone(),
                    });
                    cl.propose_all(leader, commands);
                    while cl.responses.len() < N as usize {
                        cl.deliver_all();
                        cl.step(leader, synod_paxos::Input::Tick);
                    }
                    black_box(cl.responses.len())
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
