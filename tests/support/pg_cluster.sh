#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks, on loopback only.
#
#   pg_cluster.sh start DIR    initdb into DIR/data, start on a free port, create
#                              database "sift", print its URL on stdout
#   pg_cluster.sh url DIR      print the URL of the cluster in DIR
#   pg_cluster.sh stop DIR     stop it (fast shutdown); DIR stays
#   pg_cluster.sh restart DIR  stop and start again on the same port
#   pg_cluster.sh destroy DIR  stop it and remove DIR
#
# The server binaries come from PG_BIN, else the newest /usr/lib/postgresql/*/bin.
# initdb refuses to run as root, so under root the cluster belongs to the
# "postgres" system user (created by Debian's postgresql package). Tuned for
# tests, not for data: fsync off, trust authentication, loopback only. Under
# root, every parent of DIR must be searchable by that user.
# Exit status 77 (ctest's skip code in this project) when no server binaries.
set -euo pipefail

die() { echo "pg_cluster: $*" >&2; exit 1; }

pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || { echo "pg_cluster: no PostgreSQL server binaries (apt install postgresql)" >&2; exit 77; }
    echo "$d"
}

# as_owner CMD...: runs CMD as the cluster's owner
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

url_of() { echo "postgresql://postgres@127.0.0.1:$(cat "$1/port")/sift"; }

start_server() {
    local dir=$1 bin
    bin=$(pg_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1" start >/dev/null ||
        { tail -20 "$dir/server.log" >&2; die "server did not start (log: $dir/server.log)"; }
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: pg_cluster.sh start|url|stop|restart|destroy DIR"

case "$cmd" in
start)
    bin=$(pg_bin)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -e "$dir/data" ] && die "$dir/data exists already"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        as_owner test -x "$dir" ||
            die "user postgres cannot reach $dir: a parent directory is private (mktemp -d makes 0700 directories; chmod 755 it or use a directory of its own)"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || { tail -20 "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<EOF
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
shared_buffers = 64MB
log_min_messages = warning
EOF
    free_port >"$dir/port"
    start_server "$dir"
    "$bin/psql" -q -h 127.0.0.1 -p "$(cat "$dir/port")" -U postgres -d postgres \
        -c 'CREATE DATABASE sift' >/dev/null
    url_of "$dir"
    ;;
url) url_of "$dir" ;;
stop) as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
restart)
    as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    start_server "$dir"
    ;;
destroy)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*) die "unknown command $cmd" ;;
esac
