//! A rolling upgrade: a three-member cluster of the previous release is
//! upgraded to this one a member at a time under a write load, and nothing
//! acknowledged is lost. Each upgraded member reads the data directory the
//! previous release wrote, talks to the members not yet upgraded in their
//! peer protocol, and once all are upgraded the members talk in this
//! release's.
//!
//! The previous release's `synod` is `SYNOD_PREVIOUS_BIN`, which
//! `scripts/previous-release` builds (and `scripts/test` sets); without it
//! the test says so and passes without running.

mod common;

use common::load::Load;
use common::Cluster;
use std::path::PathBuf;

fn previous_release() -> Option<PathBuf> {
    match std::env::var_os("SYNOD_PREVIOUS_BIN") {
        Some(bin) => Some(PathBuf::from(bin)),
        None => {
            eprintln!("SKIPPED: SYNOD_PREVIOUS_BIN is not set (scripts/previous-release builds it)");
            None
        }
    }
}

/// Whether member `i`'s log says it connected to a peer in protocol
/// version `v`.
fn connected_in(cluster: &Cluster, i: usize, v: u8) -> bool {
    cluster.log(i).lines().any(|l| l.contains("connected to peer") && l.contains(&format!("protocol={v}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_upgraded_one_member_at_a_time_under_load_loses_nothing() {
    let Some(previous) = previous_release() else { return };
    assert!(previous.exists(), "SYNOD_PREVIOUS_BIN {} does not exist", previous.display());
    let mut cluster = Cluster::start_prepared(3, &[], |c| {
        for i in 0..3 {
            c.set_program(i, Some(previous.clone()));
        }
    });
    cluster.wait_ready().await;
    let load = Load::start([0, 1, 2, 0, 1, 2].iter().map(|&i| cluster.endpoint(i)).collect()).await;
    load.progress(100, "on the previous release").await;

    // Followers first, the leader last, as an operator would.
    let leader = cluster.leader().await;
    let order: Vec<usize> = (0..3).filter(|&i| i != leader).chain([leader]).collect();
    for (n, &i) in order.iter().enumerate() {
        cluster.kill(i);
        load.progress(50, "with a member down for its upgrade").await;
        cluster.set_program(i, None);
        cluster.start_member(i);
        cluster.wait_member_ready(i).await;
        load.progress(100, "after a member was upgraded").await;
        let log = cluster.log(i);
        assert!(!log.contains("panicked"), "upgraded member {i} panicked:\n{log}");
        if n < 2 {
            // Members of the previous release remain: the upgraded one
            // talks to them in their protocol.
            assert!(connected_in(&cluster, i, 4), "member {i} never spoke protocol 4 to the previous release");
        }
        if n == 0 {
            // Writes go on with only this member and one of the previous
            // release up: the two releases make a quorum together.
            let other = order[1];
            cluster.kill(other);
            load.progress(50, "with one upgraded member and one of the previous release").await;
            cluster.start_member(other);
            cluster.wait_member_ready(other).await;
        }
    }

    // All upgraded: the last one talks to the others in this release's
    // protocol (they all dialled it fresh when it came back).
    let last = order[2];
    assert!(connected_in(&cluster, last, 5), "member {last} never spoke protocol 5 to upgraded members");
    load.progress(100, "after the whole cluster was upgraded").await;
    let acked = load.stop().await;
    for i in 0..3 {
        cluster.assert_none_lost(i, &acked).await;
    }
    eprintln!("{} writes acknowledged across the upgrade, none lost", acked.len());
}
