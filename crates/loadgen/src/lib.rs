//! Load generation and differential testing for etcd-compatible servers.
//!
//! `synod-bench` drives any endpoints that speak the etcd v3 KV API (Debian's
//! etcd as well as synod) with one workload and prints one JSON line of
//! throughput and latency, so the same numbers can be taken from both and
//! compared. This crate must never know about synod's internals: it talks to
//! a server only through the public etcd API, which is what makes its numbers
//! and its differential verdicts comparable between the two servers.
//!
//! - [`bench`](mod@bench): workloads, the closed-loop driver and its report.
//! - [`progress`]: the progress lines a run prints on stderr.
//! - [`timeline`]: a run's completions sorted into seconds.
//! - [`record`]: the JSON record of a run (`--json`), a versioned schema.
//! - [`plot`]: SVG plots drawn from records (`synod-bench plot`).
//! - [`compare`]: the side-by-side table `synod-bench compare` prints.
//! - [`raw`]: a KV client that returns etcd's protobuf messages untouched,
//!   for tests that compare responses field by field.
//! - [`node`]: starts one etcd-flag-compatible server process on loopback.
//! - [`reconfig`]: membership changes and learner catch-up, measured.

#![warn(missing_docs)]

pub mod bench;
pub mod compare;
pub mod node;
pub mod plot;
pub mod progress;
pub mod raw;
pub mod reconfig;
pub mod record;
pub mod timeline;
