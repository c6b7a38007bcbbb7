#!/usr/bin/env bash
# Makes etcd-3.4.db, the etcd snapshot that synod's etcd_db tests read
# (golden file: it pins the format Synod must go on restoring). Needs
# Debian's etcd and etcdctl 3.4 (scripts/setup installs them). Writes, in
# order (revisions in brackets): put a 1 [2], put b 2 [3], put a 3 [4],
# put c 4 [5], del c [6], put big (6000 x's, overflow pages) [7], a lease
# of 300 s with put leased v [8], a lease of 60 s with no keys, put x 9 [9],
# put x 10 [10], compaction at 4, put a 5 [11], del b [12]; users root
# (rootpw) and alice (alicepw), role reader (read /r/ prefix) granted to
# alice, root granted root, auth enabled; put after-auth y [13].
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/etcd-3.4.db
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
etcd --name s --data-dir d --listen-client-urls http://127.0.0.1:23791 \
    --advertise-client-urls http://127.0.0.1:23791 --listen-peer-urls http://127.0.0.1:23801 \
    --initial-advertise-peer-urls http://127.0.0.1:23801 --initial-cluster s=http://127.0.0.1:23801 \
    >etcd.log 2>&1 &
pid=$!
export ETCDCTL_API=3
e() { etcdctl --endpoints=127.0.0.1:23791 "$@"; }
until e endpoint health >/dev/null 2>&1; do sleep 0.1; done
e put a 1; e put b 2; e put a 3; e put c 4; e del c
e put big "$(head -c 6000 /dev/zero | tr '\0' x)"
lease=$(e lease grant 300 | awk '{print $2}')
e put leased v --lease="$lease"
e lease grant 60
e put x 9; e put x 10
e compaction 4
e put a 5; e del b
e user add root:rootpw; e role add reader; e role grant-permission reader read /r/ --prefix=true
e user add alice:alicepw; e user grant-role alice reader; e user grant-role root root
e auth enable
e --user root:rootpw put after-auth y
e --user root:rootpw snapshot save "$out"
