#!/usr/bin/env bash
# Fuzz a running `persguard serve` (embedded: SQLite, local storage, in-process runner) with schemathesis, every
# check on, once with an admin key and once with a rights holder's key. Prints the figures of docs/RELIABILITY.md.
#
#   benchmarks/fuzz.sh [SEED] [MAX_EXAMPLES]      (defaults 1 and 100: 100 generated cases per operation and phase)
#
# The server runs in a fresh temporary directory on a free port; its log and the JSON reports are kept there
# (the path is printed). Needs the dev extras (schemathesis) in .venv.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/.venv/bin}
SEED=${1:-1}
MAX_EXAMPLES=${2:-100}
WORK=$(mktemp -d /tmp/persguard-fuzz.XXXXXX)
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"

export OMP_NUM_THREADS=1 PERSGUARD_TORCH_THREADS=1 PERSGUARD_SIGNING_SECRET=fuzz-signing-secret
# Jobs the fuzzer queues run the service's whole job path (lease, progress, state, archive, publish, verification
# record) around the tests' stand-in implantation (a millisecond per step) instead of minutes of training each.
export PERSGUARD_PROTECT_FN=tests.worker.fakes:stepping_protect PERSGUARD_VERIFY_FN=tests.worker.fakes:fake_verify
export FAKE_STEP_S=0.001
export PYTHONPATH=$REPO SCHEMATHESIS_HOOKS=benchmarks.fuzz_hooks FUZZ_DROPPED_LOG=$WORK/dropped.log

cd "$WORK"
"$BIN/persguard" admin create-tenant fuzz >/dev/null
ADMIN_KEY=$("$BIN/persguard" admin create-key --tenant fuzz --role admin)
RIGHTS_HOLDER_KEY=$("$BIN/persguard" admin create-key --tenant fuzz --role rights_holder)

"$BIN/persguard" serve --port "$PORT" >serve.log 2>&1 &
SERVER=$!
stop_server() {
    kill "$SERVER" 2>/dev/null || return 0
    for _ in $(seq 20); do kill -0 "$SERVER" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$SERVER" 2>/dev/null || true
}
trap stop_server EXIT
for _ in $(seq 120); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.5; done

status=0
for role in admin rights_holder; do
    key_var="${role^^}_KEY"
    # run in $WORK, so that schemathesis's cache (stored crashes it would replay) starts empty every time
    "$BIN/schemathesis" --config-file "$REPO/benchmarks/schemathesis.toml" run "$URL/openapi.json" \
        --checks all \
        -H "Authorization: Bearer ${!key_var}" \
        --seed "$SEED" --max-examples "$MAX_EXAMPLES" --workers 1 \
        --report json --report-json-path "$WORK/$role.json" >"$WORK/$role.out" 2>&1 || status=$?
    tail -n 25 "$WORK/$role.out"
done

"$BIN/python" - "$WORK" "$SEED" "$MAX_EXAMPLES" <<'PY'
import json, re, sys
from collections import Counter
from pathlib import Path

work, seed, max_examples = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
log = (work / "serve.log").read_text(errors="replace")
total = {"generated": 0, "failures": 0, "errors": 0, "filtered": 0}
print(f"\nseed {seed}, max examples {max_examples}, work dir {work}")
for role in ("admin", "rights_holder"):
    report = json.loads((work / f"{role}.json").read_text())
    cases = report["test_cases"]
    failures = sum(f["count"] for f in report["failures"])
    total["generated"] += cases["generated"]
    total["failures"] += failures
    total["errors"] += len(report["errors"])
    total["filtered"] += report["filtered"]
    kinds = ", ".join(f"{f['code']} x{f['count']} ({', '.join(f['operations'])})" for f in report["failures"]) or "-"
    print(f"{role}: {cases['generated']} cases, {failures} failures [{kinds}], {len(report['errors'])} errors, "
          f"{report['filtered']} failures dropped by benchmarks/fuzz_hooks.py, {report['running_time']:.0f} s")
server_errors = len(re.findall(r'" 5\d\d ', log))
dropped_log = work / "dropped.log"
kinds = Counter(dropped_log.read_text().splitlines()) if dropped_log.exists() else Counter()
print("dropped by kind: " + ("; ".join(f"{kind}: {n}" for kind, n in sorted(kinds.items())) or "none"))
print(f"total: {total['generated']} cases, {total['failures']} failures, {total['errors']} errors, "
      f"{total['filtered']} dropped; "
      f"5xx responses in the server log: {server_errors}, tracebacks: {log.count('Traceback')}")
PY
exit $status
