# shellcheck shell=bash
# Starting and stopping a three-member cluster of etcd or synod on loopback.
# Both take etcd's flags, so one function starts either and both get exactly
# the same treatment (same flags, fsync on, data in a temp dir).
#
# Source it, then:
#   cluster_start BINARY DATA_DIR BASE_PORT [TOKEN]
#       members n1..n3, client ports BASE, BASE+10, BASE+20 and peer ports
#       one above each (below Linux's ephemeral range); sets CLUSTER_ENDPOINTS (comma-separated) and
#       CLUSTER_PIDS; returns once every member answers a linearizable read.
#   cluster_stop
#       SIGTERM, then SIGKILL after 5 s, to exactly the pids it started.
# Needs BENCH_BIN (synod-bench) for the readiness probe.

CLUSTER_PIDS=()
CLUSTER_ENDPOINTS=""

cluster_start() {
    local bin=$1 dir=$2 base=$3 token=${4:-synod-bench}
    local initial="" i client peer
    CLUSTER_PIDS=()
    CLUSTER_ENDPOINTS=""
    for i in 1 2 3; do
        peer=$((base + (i - 1) * 10 + 1))
        initial+="${initial:+,}n$i=http://127.0.0.1:$peer"
    done
    mkdir -p "$dir"
    for i in 1 2 3; do
        client=$((base + (i - 1) * 10))
        peer=$((client + 1))
        "$bin" --name "n$i" --data-dir "$dir/n$i" \
            --listen-client-urls "http://127.0.0.1:$client" \
            --advertise-client-urls "http://127.0.0.1:$client" \
            --listen-peer-urls "http://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
            --initial-cluster "$initial" \
            --initial-cluster-state new \
            --initial-cluster-token "$token" \
            >"$dir/n$i.log" 2>&1 &
        CLUSTER_PIDS+=($!)
        CLUSTER_ENDPOINTS+="${CLUSTER_ENDPOINTS:+,}http://127.0.0.1:$client"
    done
    local ep deadline=$((SECONDS + 60))
    for ep in ${CLUSTER_ENDPOINTS//,/ }; do
        until "$BENCH_BIN" --endpoints "$ep" --workload get --no-prefill \
            --requests 1 --concurrency 1 --timeout 2 >/dev/null 2>&1; do
            if ((SECONDS > deadline)); then
                echo "cluster_start: $ep not serving after 60 s; logs in $dir" >&2
                tail -n 20 "$dir"/n*.log >&2
                cluster_stop
                return 1
            fi
            for i in "${!CLUSTER_PIDS[@]}"; do
                if ! kill -0 "${CLUSTER_PIDS[$i]}" 2>/dev/null; then
                    echo "cluster_start: member n$((i + 1)) of $bin exited; log:" >&2
                    tail -n 20 "$dir/n$((i + 1)).log" >&2
                    cluster_stop
                    return 1
                fi
            done
            sleep 0.2
        done
    done
}

cluster_stop() {
    local pid waited=0
    ((${#CLUSTER_PIDS[@]})) || return 0
    kill -TERM "${CLUSTER_PIDS[@]}" 2>/dev/null || true
    for pid in "${CLUSTER_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((waited < 50)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
}
