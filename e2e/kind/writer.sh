#!/usr/bin/env bash
# e2e-writer DOMAIN OBJECT: the client that writes all along a disruptive step of the kind
# suite. Increments counter OBJECT through the SRV records of DOMAIN (one client process
# per call, so every call also exercises discovery) until /tmp/stop appears, then writes
# "ACKED FAILED" to /tmp/result. A failed call may or may not have been applied, so the
# suite checks ACKED <= counter increase <= ACKED + FAILED. Progress: /tmp/progress;
# failure messages: /tmp/errors. (E2E_WRITER_DIR replaces /tmp in selftest.sh.)
set -uo pipefail
domain=$1
object=${2:-counter}
dir=${E2E_WRITER_DIR:-/tmp}
acked=0
failed=0
: >"$dir/errors"
while [ ! -e "$dir/stop" ]; do
  if out="$(concoord call --timeout 10s "$domain" "$object" increment 2>&1)"; then
    acked=$((acked + 1))
  else
    failed=$((failed + 1))
    printf '%s call %d: %s\n' "$(date -u +%H:%M:%S)" $((acked + failed)) "$out" >>"$dir/errors"
  fi
  printf '%d %d\n' "$acked" "$failed" >"$dir/progress.new" && mv "$dir/progress.new" "$dir/progress"
done
printf '%d %d\n' "$acked" "$failed" >"$dir/result.new" && mv "$dir/result.new" "$dir/result"
# Stay up so the suite can read the result; the pod is deleted afterwards.
exec sleep infinity
