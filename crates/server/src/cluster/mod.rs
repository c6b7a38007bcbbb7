//! This member among the others:
//! * [`bootstrap`]: who the member is, settled once at start (from the
//!   flags, from the cluster it joins, or from its data directory);
//! * [`membership`]: keeps the transport's peers in step with membership
//!   changes, promotes learners added as voters, stops a removed member;
//! * [`forward`]: takes what only the leader serves (lease keep-alives and TTL
//!   queries, membership changes, leader transfers) from a follower to the
//!   leader.
//!
//! None of it decides membership: changes are chosen through the log, and
//! these modules act on what was chosen.

pub mod bootstrap;
pub mod forward;
pub mod membership;
