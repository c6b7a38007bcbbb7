//! Single-decree Paxos (in progress).
