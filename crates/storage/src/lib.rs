//! synod-storage (in progress).
