//! synod-kv (in progress).
