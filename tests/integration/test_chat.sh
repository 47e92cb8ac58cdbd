#!/usr/bin/env bash
# POST /v1/chat/completions and GET /v1/models over real sockets, with curl:
# bearer auth, model_not_found, request checks (400 in OpenAI's error shape
# with sift's keys too), the chat.completion body and its "sift" timeline,
# the chunk stream's framing (every chunk parses, role first, one stop, usage
# when asked, [DONE] last), a session handed on to /v1/search, and a run that
# fails mid-stream (error object, then [DONE]) or in one piece (504).
set -euo pipefail
source "$SIFT_SOURCE_DIR/tests/integration/serve_lib.sh"
load_sample products inventory prices
command -v python3 >/dev/null || fail "python3 is needed (scripts/install-deps.sh installs it)"

key=chat-test-key-1234
SIFT_API_KEYS=$key SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 2 >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the server did not start"
url="http://127.0.0.1:$port"
auth="Authorization: Bearer $key"
q='Is NIKE-PEG40-42 in stock in Hanoi, Da Nang or HCMC?'

# post BODY [curl args...]: the status; the body in $tmp/out
post() {
    local body=$1
    shift
    curl -s -o "$tmp/out" -w '%{http_code}' -H 'Content-Type: application/json' "$@" \
        -X POST "$url/v1/chat/completions" -d "$body"
}
# openai_error STATUS CODE TYPE: $tmp/out must be {"error":{"message","type","param",
# "code"}} with that code and type; kept and checked by check_errors (one python3
# for all of them: it takes half a second to start on a busy machine)
nerr=0
openai_error() {
    nerr=$((nerr + 1))
    cp "$tmp/out" "$tmp/err.$nerr"
    echo "$tmp/err.$nerr $2 $3" >>"$tmp/errors"
}
check_errors() {
    python3 - "$tmp/errors" <<'EOF' || fail "error bodies"
import json, sys
for line in open(sys.argv[1]):
    path, code, typ = line.split()
    body = open(path).read()
    e = json.loads(body)["error"]
    assert e["code"] == code and e["type"] == typ, body
    assert isinstance(e["message"], str) and e["message"], body
    assert "param" in e, body
EOF
    rm -f "$tmp/errors"
}

# auth: no key, a wrong key
code=$(post "{\"model\":\"sift\",\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}")
[ "$code" = 401 ] || fail "no key: $code"
openai_error 401 unauthorized authentication_error
code=$(post '{"model":"sift","messages":[{"role":"user","content":"hi"}]}' -H 'Authorization: Bearer nope')
[ "$code" = 401 ] || fail "wrong key: $code"
code=$(curl -s -o "$tmp/out" -w '%{http_code}' "$url/v1/models")
[ "$code" = 401 ] || fail "models without a key: $code"

# the models list and one model
curl -sf -H "$auth" "$url/v1/models" >"$tmp/models" || fail "GET /v1/models"
python3 - "$tmp/models" <<'EOF' || fail "models: $(cat "$tmp/models")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["object"] == "list" and [m["id"] for m in d["data"]] == ["sift"], d
assert d["data"][0]["object"] == "model" and isinstance(d["data"][0]["created"], int), d
EOF
curl -sf -H "$auth" "$url/v1/models/sift" >"$tmp/model" || fail "GET /v1/models/sift"
grep -q '"id":"sift"' "$tmp/model" || fail "GET /v1/models/sift: $(cat "$tmp/model")"
code=$(curl -s -o "$tmp/out" -w '%{http_code}' -H "$auth" "$url/v1/models/gpt-4o")
[ "$code" = 404 ] || fail "unknown model id: $code"
openai_error 404 model_not_found invalid_request_error

# unknown model
code=$(post '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}' -H "$auth")
[ "$code" = 404 ] || fail "unknown model: $code"
openai_error 404 model_not_found invalid_request_error

# request checks: each is a 400 invalid_request naming the problem
check_400() {
    local body=$1 want=$2
    code=$(post "$body" -H "$auth")
    [ "$code" = 400 ] || fail "'$body': status $code, $(cat "$tmp/out")"
    openai_error 400 invalid_request invalid_request_error
    grep -q "$want" "$tmp/out" || fail "'$body': message lacks '$want': $(cat "$tmp/out")"
}
check_400 'not json' 'must be a JSON object'
check_400 '{"messages":[{"role":"user","content":"hi"}]}' 'model: required'
check_400 '{"model":"sift"}' 'messages: must be a non-empty array'
check_400 '{"model":"sift","messages":[]}' 'messages: must be a non-empty array'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}' \
    'messages\[1\]: the last message must be a user message'
check_400 '{"model":"sift","messages":[{"role":"user","content":""}]}' 'the last message must be a user message'
check_400 '{"model":"sift","messages":[{"role":"robot","content":"x"},{"role":"user","content":"hi"}]}' \
    'messages\[0\].role'
check_400 '{"model":"sift","messages":[{"role":"tool","tool_call_id":"c9","content":"x"},{"role":"user","content":"hi"}]}' \
    'messages\[0\].tool_call_id: answers no tool call'
check_400 '{"model":"sift","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}' \
    'messages\[0\].content\[0\]: only text parts'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"}],"stream":"yes"}' 'stream: must be true or false'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":1}}' \
    'include_usage: must be true or false'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"}],"n":3}' 'n: only 1 choice'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}]}' \
    'tools: the agent runs its own tools'
check_400 '{"model":"sift","messages":[{"role":"user","content":"hi"}],"sift":{"session_id":"no spaces"}}' \
    'sift.session_id'
long=$(head -c 3000 /dev/zero | tr '\0' a)
code=$(post "{\"model\":\"sift\",\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}" -H "$auth")
[ "$code" = 413 ] || fail "long question: $code"
openai_error 413 too_large invalid_request_error
check_errors

# non-streaming: a chat.completion with the tool timeline in "sift"; fields
# sift does not act on are accepted
body="{\"model\":\"sift\",\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}],\"temperature\":0.2,
      \"max_tokens\":50,\"user\":\"u-1\",\"sift\":{\"session_id\":\"chat-t1\"}}"
code=$(post "$body" -H "$auth")
[ "$code" = 200 ] || fail "completion: $code $(cat "$tmp/out")"
cp "$tmp/out" "$tmp/completion"
python3 - "$tmp/completion" <<'EOF' || fail "completion body: $(head -c 600 "$tmp/completion")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["object"] == "chat.completion" and d["id"].startswith("chatcmpl-"), d
assert d["model"] == "sift" and isinstance(d["created"], int), d
assert len(d["choices"]) == 1, d
c = d["choices"][0]
assert c["index"] == 0 and c["finish_reason"] == "stop", c
assert c["message"]["role"] == "assistant", c
assert "NIKE-PEG40-42" in c["message"]["content"] and "Stock:" in c["message"]["content"], c
u = d["usage"]
assert all(isinstance(u[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens")), u
s = d["sift"]
assert s["session_id"] == "chat-t1" and s["run_id"] and s["steps"] == 3, s
names = [(e["event"], e.get("name")) for e in s["events"]]
assert names[0] == ("run.started", None) and names[-1] == ("run.finished", None), names
started = [e for e in s["events"] if e["event"] == "tool.started" and e["name"] == "check_inventory"]
finished = [e for e in s["events"] if e["event"] == "tool.finished" and e["name"] == "check_inventory"]
assert len(started) == 3 and len(finished) == 3, names
assert {e["arguments"]["location"] for e in started} == {"HAN", "DAD", "SGN"}, started
assert all(e["error"] is None and e["duration_ms"] >= 0 for e in finished), finished
assert any(e["event"] == "products" for e in s["events"]), names
assert not any(e["event"] in ("token", "answer") for e in s["events"]), names
EOF

# the session it saved continues on /v1/search
curl -sf -X POST -H "$auth" -H 'Accept: application/json' "$url/v1/search" \
    -d '{"query":"what about size 43?","session_id":"chat-t1"}' >"$tmp/json" || fail "search follow-up"
grep -q '"answer":"I found .*size 43' "$tmp/json" || fail "follow-up: $(head -c 300 "$tmp/json")"

# streaming, with usage: framing checked chunk by chunk; the text is the
# same answer as in one piece
stream() {
    curl -sfN -H "$auth" -H 'Content-Type: application/json' -X POST "$url/v1/chat/completions" \
        -D "$tmp/headers" -d "$1" >"$tmp/sse" || fail "stream request"
    grep -qi '^content-type: text/event-stream' "$tmp/headers" || fail "not an event stream"
}
stream "{\"model\":\"sift\",\"stream\":true,\"stream_options\":{\"include_usage\":true},
         \"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}"
python3 - "$tmp/sse" "$tmp/completion" usage <<'EOF' || fail "stream framing"
import json, sys
raw = open(sys.argv[1]).read()
want = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
usage = sys.argv[3] == "usage"
assert raw.endswith("data: [DONE]\n\n"), raw[-200:]
events = raw.split("\n\n")[:-1]
assert all(e.startswith("data: ") and "\n" not in e for e in events), "not one data line per event"
datas = [e[6:] for e in events]
assert datas[-1] == "[DONE]" and datas.count("[DONE]") == 1
chunks = [json.loads(d) for d in datas[:-1]]
ids = {c["id"] for c in chunks}
assert len(ids) == 1 and ids.pop().startswith("chatcmpl-"), "one id"
body = [c for c in chunks if c["choices"]]
assert all(c["object"] == "chat.completion.chunk" and c["model"] == "sift" for c in chunks)
assert body[0]["choices"][0]["delta"].get("role") == "assistant", body[0]
assert not any("role" in c["choices"][0]["delta"] for c in body[1:])
finals = [i for i, c in enumerate(body) if c["choices"][0]["finish_reason"] is not None]
assert finals == [len(body) - 1] and body[-1]["choices"][0]["finish_reason"] == "stop", finals
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body)
assert text == want, (text, want)
ext = [c["sift"] for c in chunks if "sift" in c]
assert [c["choices"][0]["delta"] for c in body if "sift" in c and c["sift"]["event"].startswith("tool.")] \
    == [{}] * 10, "tool chunks carry an empty delta"
inv = [e for e in ext if e["event"] == "tool.started" and e["name"] == "check_inventory"]
assert len(inv) == 3, ext
assert ext[0]["event"] == "run.started" and ext[-1]["event"] == "run.finished", ext
assert any(e["event"] == "products" for e in ext)
if usage:
    assert not chunks[-1]["choices"] and set(chunks[-1]["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}, chunks[-1]
    assert all(c["usage"] is None for c in chunks[:-1])
else:
    assert all("usage" not in c for c in chunks)
EOF
stream "{\"model\":\"sift\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}"
python3 - "$tmp/sse" "$tmp/completion" no-usage <<'EOF' || fail "stream framing without usage"
import json, sys
raw = open(sys.argv[1]).read()
chunks = [json.loads(e[6:]) for e in raw.split("\n\n")[:-2]]
assert raw.endswith("data: [DONE]\n\n")
assert all("usage" not in c and len(c["choices"]) == 1 for c in chunks)
EOF

# the other routes of the API stay as they were
[ "$(curl -sf "$url/healthz")" = '{"status":"ok"}' ] || fail "healthz"
kill -TERM "$pid"
wait "$pid" || fail "sift serve exited with $? after SIGTERM"
pid=

# runs that fail: a 4 s deadline and answers written at 400 ms a word (over
# 10 s for this answer): the tools have seconds to finish, even on a loaded
# machine, so some text comes before the deadline, and the answer cannot
# finish before it
printf 'agent:\n  deadline_ms: 4000\n' >"$tmp/slow.yaml"
SIFT_OFFLINE_TOKEN_DELAY_MS=400 SIFT_LOG_LEVEL=info "$sift" serve --config "$tmp/slow.yaml" --port 0 --workers 1 \
    >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the slow server did not start"
url="http://127.0.0.1:$port"
auth="X-None: 1"
stream "{\"model\":\"sift\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}"
python3 - "$tmp/sse" <<'EOF' || fail "mid-stream failure: $(tail -c 600 "$tmp/sse")"
import json
import sys
raw = open(sys.argv[1]).read()
datas = [e[6:] for e in raw.split("\n\n")[:-1]]
assert datas[-1] == "[DONE]", datas[-3:]
err = json.loads(datas[-2])
assert err["error"]["code"] == "deadline_exceeded" and err["error"]["type"] == "server_error", err
assert "deadline" in err["error"]["message"] and err["sift"]["event"] == "error", err
chunks = [json.loads(d) for d in datas[:-2]]
assert any(c["choices"][0]["delta"].get("content") for c in chunks), "some text came first"
assert all(c["choices"][0]["finish_reason"] is None for c in chunks), "no stop after a failure"
EOF
code=$(post "{\"model\":\"sift\",\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}")
[ "$code" = 504 ] || fail "failed run in one piece: $code $(head -c 300 "$tmp/out")"
openai_error 504 deadline_exceeded server_error
grep -q '"sift":{"run_id"' "$tmp/out" || fail "the failed run's timeline"
check_errors

# a clean exit (under the sanitizers: no leak from the failed runs)
kill -TERM "$pid"
wait "$pid" || fail "the slow sift serve exited with $? after SIGTERM"
pid=

# a client that leaves mid-stream cancels the run, as on /v1/search: a server
# of its own with the default 30 s deadline, so that however long the client
# takes to leave, the run ends by the cancellation and not by a deadline
SIFT_OFFLINE_TOKEN_DELAY_MS=400 SIFT_LOG_LEVEL=info "$sift" serve --port 0 --workers 1 \
    >"$tmp/serve.log" 2>&1 &
pid=$!
port=$(wait_for_port "$tmp/serve.log") || fail "the cancel server did not start"
url="http://127.0.0.1:$port"
curl -s -N -X POST "$url/v1/chat/completions" \
    -d "{\"model\":\"sift\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"$q\"}]}" \
    >"$tmp/partial" &
client=$!
extra_pids+=("$client")
# leave once the stream has started (polled: no guess at how long that takes)
for _ in $(seq 200); do grep -q '"role":"assistant"' "$tmp/partial" && break; sleep 0.1; done
kill "$client" 2>/dev/null || true
wait "$client" || true
grep -q '"role":"assistant"' "$tmp/partial" || fail "the stream did not start"
grep -q '"finish_reason":"stop"' "$tmp/partial" && fail "the run finished before its client left"
cancelled() { curl -sf "$url/metrics" >"$tmp/metrics" &&
    grep -q '^sift_runs_finished_total{reason="cancelled"} 1$' "$tmp/metrics"; }
for _ in $(seq 200); do cancelled && break; sleep 0.1; done
cancelled || fail "the run was not cancelled: $(grep finished "$tmp/metrics")"
# a clean exit (under the sanitizers: no leak from the cancelled run)
kill -TERM "$pid"
wait "$pid" || fail "the cancel sift serve exited with $? after SIGTERM"
pid=
echo "test_chat: ok"
