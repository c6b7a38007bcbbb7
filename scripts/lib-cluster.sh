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
#   cluster_make_certs DIR
#       with openssl: a CA (DIR/ca.pem), a certificate per member for
#       127.0.0.1 (DIR/n1.pem, DIR/n1-key.pem, ...; server and client use,
#       for clients and peers alike) and one for clients (DIR/client.pem,
#       DIR/client-key.pem).
# With CLUSTER_TLS_DIR set (a DIR cluster_make_certs filled), every URL is
# https:// and members get etcd's client and peer certificate flags, both
# requiring certificates from the CA; CLUSTER_CLIENT_TLS then holds the
# synod-bench flags a client needs (--cacert, --cert, --key) and
# CLUSTER_ETCDCTL_TLS etcdctl's.
# Needs BENCH_BIN (synod-bench) for the readiness probe.

CLUSTER_PIDS=()
CLUSTER_ENDPOINTS=""
CLUSTER_CLIENT_TLS=()
CLUSTER_ETCDCTL_TLS=()

cluster_make_certs() {
    local dir=$1 name
    mkdir -p "$dir"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30 \
        -subj "/CN=synod-bench CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
    for name in n1 n2 n3 client; do
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -subj "/CN=$name" -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$dir/$name.ext"
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
            -CAcreateserial -days 30 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    done
}

cluster_start() {
    local bin=$1 dir=$2 base=$3 token=${4:-synod-bench}
    local initial="" i client peer scheme=http tls_flags
    CLUSTER_PIDS=()
    CLUSTER_ENDPOINTS=""
    CLUSTER_CLIENT_TLS=()
    CLUSTER_ETCDCTL_TLS=()
    if [ -n "${CLUSTER_TLS_DIR:-}" ]; then
        scheme=https
        CLUSTER_CLIENT_TLS=(--cacert "$CLUSTER_TLS_DIR/ca.pem"
            --cert "$CLUSTER_TLS_DIR/client.pem" --key "$CLUSTER_TLS_DIR/client-key.pem")
        CLUSTER_ETCDCTL_TLS=(--cacert="$CLUSTER_TLS_DIR/ca.pem"
            --cert="$CLUSTER_TLS_DIR/client.pem" --key="$CLUSTER_TLS_DIR/client-key.pem")
    fi
    for i in 1 2 3; do
        peer=$((base + (i - 1) * 10 + 1))
        initial+="${initial:+,}n$i=$scheme://127.0.0.1:$peer"
    done
    mkdir -p "$dir"
    # etcd and synod both read ETCD_* variables (synod refuses one it does
    # not know, such as ETCD_BIN): the members get none of the caller's.
    local unset_etcd=() var
    for var in $(compgen -e); do
        case $var in ETCD_*) unset_etcd+=(-u "$var") ;; esac
    done
    for i in 1 2 3; do
        client=$((base + (i - 1) * 10))
        peer=$((client + 1))
        tls_flags=()
        if [ -n "${CLUSTER_TLS_DIR:-}" ]; then
            tls_flags=(
                --cert-file "$CLUSTER_TLS_DIR/n$i.pem" --key-file "$CLUSTER_TLS_DIR/n$i-key.pem"
                --trusted-ca-file "$CLUSTER_TLS_DIR/ca.pem" --client-cert-auth
                --peer-cert-file "$CLUSTER_TLS_DIR/n$i.pem" --peer-key-file "$CLUSTER_TLS_DIR/n$i-key.pem"
                --peer-trusted-ca-file "$CLUSTER_TLS_DIR/ca.pem" --peer-client-cert-auth
            )
        fi
        env "${unset_etcd[@]}" "$bin" --name "n$i" --data-dir "$dir/n$i" \
            --listen-client-urls "$scheme://127.0.0.1:$client" \
            --advertise-client-urls "$scheme://127.0.0.1:$client" \
            --listen-peer-urls "$scheme://127.0.0.1:$peer" \
            --initial-advertise-peer-urls "$scheme://127.0.0.1:$peer" \
            --initial-cluster "$initial" \
            --initial-cluster-state new \
            --initial-cluster-token "$token" \
            "${tls_flags[@]}" \
            >"$dir/n$i.log" 2>&1 &
        CLUSTER_PIDS+=($!)
        CLUSTER_ENDPOINTS+="${CLUSTER_ENDPOINTS:+,}$scheme://127.0.0.1:$client"
    done
    local ep deadline=$((SECONDS + 60))
    for ep in ${CLUSTER_ENDPOINTS//,/ }; do
        until "$BENCH_BIN" --endpoints "$ep" --workload get --no-prefill \
            --requests 1 --concurrency 1 --timeout 2 "${CLUSTER_CLIENT_TLS[@]}" >/dev/null 2>&1; do
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
