//! The synod server (in progress).
