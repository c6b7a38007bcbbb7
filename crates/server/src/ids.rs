//! Member and cluster ids, derived as etcd derives them so that every member
//! started with the same `--initial-cluster` and `--initial-cluster-token`
//! computes the same ids without talking to the others.
//!
//! etcd hashes a member's sorted peer URLs with the cluster token (SHA-1,
//! first 8 bytes), and the cluster id from the sorted member ids. We use
//! 64-bit FNV-1a for both: the ids only need to be deterministic, stable
//! across releases (unlike `std`'s hasher) and unlikely to collide; they are
//! not a security boundary. Zero means "none" in etcd's API and in the
//! protocol, so it is never produced.

/// 64-bit FNV-1a.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn non_zero(h: u64) -> u64 {
    if h == 0 {
        1
    } else {
        h
    }
}

/// A member's id: from its peer URLs (in any order) and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut parts: Vec<&[u8]> = urls.iter().map(|u| u.as_bytes()).collect();
    parts.push(token.as_bytes());
    non_zero(fnv1a(&parts))
}

/// The cluster's id: from its member ids (in any order) and the token.
pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<[u8; 8]> = ids.iter().map(|id| id.to_be_bytes()).collect();
    let mut parts: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    parts.push(token.as_bytes());
    non_zero(fnv1a(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_urls_and_token_but_not_order() {
        let a = vec!["http://a:1".to_string(), "http://a:2".to_string()];
        let b = vec!["http://a:2".to_string(), "http://a:1".to_string()];
        assert_eq!(member_id(&a, "t"), member_id(&b, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&a, "u"));
        assert_ne!(member_id(&a[..1], "t"), member_id(&a, "t"));
        assert_eq!(cluster_id(&[1, 2, 3], "t"), cluster_id(&[3, 1, 2], "t"));
        assert_ne!(cluster_id(&[1, 2, 3], "t"), cluster_id(&[1, 2, 3], "u"));
        assert_ne!(member_id(&a, "t"), 0);
    }
}
