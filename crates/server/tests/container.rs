//! The container image and compose file (`scripts/test-container`: three
//! members in Docker, one killed and another paused in turn while writes go
//! on), from cargo. Ignored by default: it needs a Docker engine, and
//! `scripts/test` runs the script itself with the release build.
//!
//! `cargo test -p synod-server --test container -- --ignored`

use std::process::Command;

#[test]
#[ignore = "needs a Docker engine; scripts/test runs scripts/test-container"]
fn three_members_in_containers_keep_taking_writes_through_a_kill_and_a_pause() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-container");
    let status = Command::new(script)
        .env("SYNOD_BIN", env!("CARGO_BIN_EXE_synod"))
        .status()
        .expect("run scripts/test-container");
    assert!(status.success(), "scripts/test-container failed: {status}");
}
