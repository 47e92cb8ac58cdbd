#!/usr/bin/env bash
# Sessions that any server can continue: two `sift serve` processes on one
# PostgreSQL database (a throwaway cluster), a question on server A and its
# follow-up on server B under the same session_id; two follow-ups answered at
# the same moment on A and B are both kept (the merge rule of
# session_pool.h); then the same continuation with two servers sharing one
# SQLite file, and sessions.store: memory keeping them per process.
# Exits 77 (skipped) without PostgreSQL server binaries.
set -euo pipefail
sift="$SIFT_BUILD_DIR/sift"
sample="$SIFT_SOURCE_DIR/catalog/sample"
cluster="$SIFT_SOURCE_DIR/tests/support/pg_cluster.sh"
tmp=$(mktemp -d)
chmod 755 "$tmp" # under root the cluster runs as "postgres", who must reach it
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    bash "$cluster" destroy "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*"
    for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -5 "$f"; }; done
    exit 1
}
cd "$tmp" # no sift.yaml here: defaults only
unset SIFT_LLM_BASE_URL SIFT_LLM_PROVIDER SIFT_DB

set +e
url=$(bash "$cluster" start "$tmp/pg" 2>"$tmp/cluster.err")
st=$?
set -e
if [ "$st" = 77 ]; then
    echo "skipped: no PostgreSQL server binaries"
    exit 77
fi
[ "$st" = 0 ] || { cat "$tmp/cluster.err"; fail "the throwaway cluster did not start"; }
psql_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/psql"

"$sift" migrate --db "$url" >/dev/null || fail "migrate"
for kind in products inventory prices; do
    "$sift" ingest --quiet --db "$url" --kind "$kind" "$sample/$kind.jsonl" 2>/dev/null ||
        fail "ingest $kind into PostgreSQL"
    "$sift" ingest --quiet --db "$tmp/sift.db" --kind "$kind" "$sample/$kind.jsonl" 2>/dev/null ||
        fail "ingest $kind into SQLite"
done

# serve NAME [ENV=VALUE...]: starts sift serve (with the options in
# serve_args) with its log in NAME.log and sets the variable NAME to its base URL
serve_args=()
servers=() # NAME:PID of each server started
serve() {
    local name=$1 port=
    shift
    : >"$tmp/$name.log" # exists before the server opens it, for the sed below
    env "$@" SIFT_LOG_LEVEL=info "$sift" serve "${serve_args[@]}" --port 0 --workers 1 >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    servers+=("$name:$!")
    for _ in $(seq 100); do
        port=$(sed -n 's/.*serving on http:\/\/127.0.0.1:\([0-9]*\)\/.*/\1/p' "$tmp/$name.log")
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || fail "server $name did not start"
    printf -v "$name" 'http://127.0.0.1:%s' "$port"
}

# ask BASE SESSION QUESTION: the JSON answer of POST /v1/search
ask() {
    curl -sf -X POST -H 'Accept: application/json' "$1/v1/search" \
        -d "{\"query\":\"$3\",\"session_id\":\"$2\"}"
}
answer() { sed -n 's/.*"answer":"\([^"]*\)".*/\1/p'; }

first="Find Nike running shoes size 42 and check if they are in stock at the Hanoi, Da Nang, and HCMC warehouses"

# ---- PostgreSQL: two servers, one database ----
# A token delay makes each run last about a second, for the concurrent turns.
serve A SIFT_DB="$url" SIFT_OFFLINE_TOKEN_DELAY_MS=15
serve B SIFT_DB="$url" SIFT_OFFLINE_TOKEN_DELAY_MS=15
grep -q "sessions: postgres at postgresql://postgres@127.0.0.1" "$tmp/A.log" ||
    fail "server A does not say where sessions are: $(cat "$tmp/A.log")"

ask "$A" pg-1 "$first" >"$tmp/a1" || fail "first question on A"
grep -q '"error":null' "$tmp/a1" || fail "first answer: $(head -c 300 "$tmp/a1")"
ask "$B" pg-1 "what about size 43?" >"$tmp/b1" || fail "follow-up on B"
b1=$(answer <"$tmp/b1")
grep -q 'size 43' <<<"$b1" || fail "B's follow-up is not about size 43: $b1"
grep -q 'Running Shoe' <<<"$b1" || fail "B's follow-up forgot the first turn (running shoes): $b1"
grep -q 'HAN' <<<"$b1" || fail "B's follow-up forgot the warehouses: $b1"
# without the first turn the same words mean something else
ask "$B" pg-fresh "what about size 43?" >"$tmp/b0" || fail "fresh question on B"
[ "$(answer <"$tmp/b0")" != "$b1" ] || fail "the follow-up answer does not depend on the session"

# and back on A: the session now holds both turns
ask "$A" pg-1 "what about size 44?" >"$tmp/a2" || fail "third turn on A"
grep -q 'size 44' <<<"$(answer <"$tmp/a2")" || fail "third turn: $(head -c 300 "$tmp/a2")"

# Two turns of one session at the same moment, one per server: both are kept.
ask "$A" pg-1 "what about size 45?" >"$tmp/c1" &
ca=$!
ask "$B" pg-1 "what about size 41?" >"$tmp/c2" &
cb=$!
wait "$ca" || fail "concurrent turn on A"
wait "$cb" || fail "concurrent turn on B"
if [ -x "$psql_bin" ]; then
    "$psql_bin" -X -q -t -A "$url" -c "SELECT messages FROM sessions WHERE id = 'pg-1'" >"$tmp/row" ||
        fail "psql"
    for q in "size 43" "size 44" "size 45" "size 41"; do
        grep -q "\"role\":\"user\",\"content\":\"what about $q?\"" "$tmp/row" ||
            fail "the stored session lost the turn \"$q\": $(head -c 600 "$tmp/row")"
    done
    [ "$(grep -o '"role":"user"' "$tmp/row" | wc -l)" = 5 ] ||
        fail "the stored session should hold 5 questions: $(head -c 600 "$tmp/row")"
fi
grep -q "another turn was saved meanwhile" "$tmp/A.log" "$tmp/B.log" ||
    fail "neither server merged a concurrent turn"
curl -sf "$A/metrics" >"$tmp/mA" && curl -sf "$B/metrics" >"$tmp/mB" || fail "metrics"
ma=$(sed -n 's/^sift_session_merges_total \([0-9]*\)$/\1/p' "$tmp/mA")
mb=$(sed -n 's/^sift_session_merges_total \([0-9]*\)$/\1/p' "$tmp/mB")
[ $((${ma:-0} + ${mb:-0})) -ge 1 ] || fail "sift_session_merges_total: A ${ma:-none}, B ${mb:-none}"
grep -q '^sift_session_seconds_count{op="load"} [1-9]' "$tmp/mA" ||
    fail "no session loads in A's metrics: $(grep sift_session "$tmp/mA")"
grep -q '^sift_session_seconds_count{op="save"} [1-9]' "$tmp/mA" || fail "no session saves in A's metrics"
# the next follow-up sees the latest turns
ask "$B" pg-1 "and the price?" >"$tmp/b3" || fail "follow-up after the concurrent turns"
grep -q '"error":null' "$tmp/b3" || fail "follow-up after the concurrent turns: $(head -c 300 "$tmp/b3")"

# While a session's load waits (a transaction holds a lock on the sessions
# table), the server's one worker still answers other requests, and a client
# that gives up while its load waits leaves nothing behind.
# Each check has a server of its own, so that no timeout meant for one check
# (or the machine being slow) can break another: server L gives a session
# query 60 s, so its load waits for as long as the lock is held; server F
# gives it 500 ms (sessions.timeout_ms), to see a load give up.
printf 'sessions:\n  timeout_ms: 60000\n' >"$tmp/long.yaml"
serve_args=(--config "$tmp/long.yaml")
serve L SIFT_DB="$url"
printf 'sessions:\n  timeout_ms: 500\n' >"$tmp/short.yaml"
serve_args=(--config "$tmp/short.yaml")
serve F SIFT_DB="$url"
serve_args=()
# lock_sessions NAME: a psql session (application_name NAME) that holds an
# exclusive lock on the sessions table until unlock NAME cancels it; returns
# once the lock is granted, not after a guessed sleep
lock_sessions() {
    PGAPPNAME="$1" "$psql_bin" -X -q "$url" -c "BEGIN; LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE;
        SELECT pg_sleep(120); COMMIT;" >/dev/null 2>&1 &
    locker=$!
    pids+=("$locker")
    for _ in $(seq 300); do
        [ "$(locked "$1")" = 1 ] && return 0
        sleep 0.1
    done
    fail "the lock on the sessions table was not taken within 30 s"
}
# locked NAME: 1 while NAME holds its lock on the sessions table
locked() {
    "$psql_bin" -X -q -t -A "$url" -c "SELECT count(*) FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.application_name = '$1'
        AND l.relation = 'sessions'::regclass AND l.mode = 'AccessExclusiveLock' AND l.granted"
}
unlock() {
    "$psql_bin" -X -q -t -A "$url" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
        WHERE application_name = '$1'" >/dev/null
    wait "$locker" || true
}
if [ -x "$psql_bin" ]; then
    lock_sessions sift-test-lock
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -X POST -H 'Accept: application/json' \
        "$L/v1/search" -d '{"query":"and the price?","session_id":"pg-1"}' || true)
    [ "$code" = 000 ] || fail "a load behind a lock should have made the client wait (status $code)"
    # L's load now waits for the lock (up to its 60 s): these two must be
    # answered meanwhile, which the lock still being held afterwards proves
    curl -sf --max-time 30 -X POST -H 'Accept: application/json' "$L/v1/search" \
        -d '{"query":"is NIKE-PEG40-42 in stock in Hanoi?"}' >"$tmp/nolock" ||
        fail "a search without a session while a load waits"
    curl -sf --max-time 30 "$L/healthz" >/dev/null || fail "healthz while a load waits"
    [ "$(locked sift-test-lock)" = 1 ] || fail "the lock ended before the other requests were answered"
    # past sessions.timeout_ms the load gives up: 503 with the store's words
    t1=$(date +%s%N)
    code=$(curl -s -o "$tmp/f1" -w '%{http_code}' --max-time 30 -X POST -H 'Accept: application/json' \
        "$F/v1/search" -d '{"query":"and the price?","session_id":"pg-1"}' || true)
    t2=$(date +%s%N)
    [ "$code" = 503 ] && grep -q '"code":"io_error"' "$tmp/f1" && grep -q 'statement timeout' "$tmp/f1" ||
        fail "a load past sessions.timeout_ms: status $code $(head -c 300 "$tmp/f1")"
    # a 500 ms timeout, not the lock's end, ended it (the lock is held until unlock)
    [ "$(locked sift-test-lock)" = 1 ] || fail "the lock ended before F's load gave up"
    [ $(((t2 - t1) / 1000000)) -lt 10000 ] || fail "the load took longer than its timeout"
    curl -sf "$F/metrics" >"$tmp/mF" || fail "F's metrics"
    grep -q '^sift_session_errors_total{op="load"} 1$' "$tmp/mF" ||
        fail "F's metrics do not count the failed load: $(grep sift_session "$tmp/mF")"
    unlock sift-test-lock
    # the waiting load now completes and finds its client gone
    for _ in $(seq 300); do
        curl -sf "$L/metrics" >"$tmp/mL" && grep -q '^sift_active_runs 0' "$tmp/mL" && break
        sleep 0.1
    done
    grep -q '^sift_active_runs 0' "$tmp/mL" ||
        fail "a run is left over after its client left: $(grep active "$tmp/mL")"
    ask "$L" pg-1 "and the price?" >"$tmp/a4" || fail "a turn after the lock"
    grep -q '"error":null' "$tmp/a4" || fail "a turn after the lock: $(head -c 300 "$tmp/a4")"
fi

# A server told to stop while a session load waits stops cleanly once the
# load returns: status 0 (under ASan: no use after free, no leak).
if [ -x "$psql_bin" ]; then
    printf 'server:\n  shutdown_grace_ms: 200\n' >"$tmp/grace.yaml"
    serve_args=(--config "$tmp/grace.yaml")
    serve G SIFT_DB="$url"
    serve_args=()
    gpid=${servers[-1]#*:}
    lock_sessions sift-test-lock-g
    curl -s -o /dev/null --max-time 30 -X POST "$G/v1/search" \
        -d '{"query":"and the price?","session_id":"pg-1"}' &
    pids+=($!)
    # TERM only once G's load is seen waiting on the lock in the database
    for _ in $(seq 300); do
        n=$("$psql_bin" -X -q -t -A "$url" -c "SELECT count(*) FROM pg_stat_activity
            WHERE wait_event_type = 'Lock' AND application_name <> 'sift-test-lock-g'")
        [ "$n" -ge 1 ] && break
        sleep 0.1
    done
    [ "$n" -ge 1 ] || fail "server G's session load never waited on the lock"
    kill -TERM "$gpid"
    sleep 1 # past G's 200 ms shutdown grace while the load still waits
    unlock sift-test-lock-g
    st=0
    wait "$gpid" || st=$?
    [ "$st" = 0 ] || fail "server G stopped with status $st during a load: $(grep -A8 Sanitizer "$tmp/G.log" | head -20)"
    unset 'servers[-1]'
fi

# ---- SQLite: two servers on one machine, one file ----
serve C SIFT_DB="$tmp/sift.db"
serve D SIFT_DB="$tmp/sift.db"
grep -q "sessions: sqlite at $tmp/sift.db" "$tmp/C.log" || fail "server C: $(cat "$tmp/C.log")"
ask "$C" lite-1 "$first" >/dev/null || fail "first question on C"
ask "$D" lite-1 "what about size 43?" >"$tmp/d1" || fail "follow-up on D"
d1=$(answer <"$tmp/d1")
grep -q 'size 43' <<<"$d1" && grep -q 'Running Shoe' <<<"$d1" && grep -q 'HAN' <<<"$d1" || fail "D did not continue C's session: $d1"

# ---- sessions.store: memory: one process's own ----
printf 'sessions:\n  store: memory\n' >"$tmp/mem.yaml"
serve_args=(--config "$tmp/mem.yaml")
serve E SIFT_DB="$tmp/sift.db"
serve_args=()
grep -q "sessions: memory" "$tmp/E.log" || fail "server E: $(cat "$tmp/E.log")"
ask "$E" lite-1 "what about size 43?" >"$tmp/e1" || fail "question on E"
[ "$(answer <"$tmp/e1")" != "$d1" ] || fail "a memory store saw the SQLite session"

# a bad sessions section stops the server at start with a clear message
printf 'sessions:\n  store: redis\n' >"$tmp/bad.yaml"
if SIFT_DB="$tmp/sift.db" "$sift" serve --config "$tmp/bad.yaml" --port 0 >"$tmp/bad.out" 2>&1; then
    fail "serve started with sessions.store: redis"
fi
grep -q "sessions.store: must be one of auto, memory, sqlite, postgres" "$tmp/bad.out" ||
    fail "bad sessions.store: $(cat "$tmp/bad.out")"
# Every server stops cleanly on SIGTERM (under ASan: no error, no leak).
for sp in "${servers[@]}"; do
    kill -TERM "${sp#*:}"
    st=0
    wait "${sp#*:}" || st=$?
    [ "$st" = 0 ] || fail "server ${sp%%:*} exited with status $st: $(grep -A8 Sanitizer "$tmp/${sp%%:*}.log" | head -20)"
done
echo "ok"
