#!/usr/bin/env bash
# e2e-writer DOMAIN OBJECT: the client that writes all along a disruptive step of the kind
# suite. Increments counter OBJECT through the SRV records of DOMAIN (one client process
# per call, so every call also exercises discovery) until /tmp/stop appears, then writes
# "ACKED FAILED" to /tmp/result. A failed call may or may not have been applied, so the
# suite checks ACKED <= counter increase <= ACKED + FAILED. Progress: /tmp/progress;
# failure messages: /tmp/errors.
set -uo pipefail
domain=$1
object=${2:-counter}
acked=0
failed=0
: >/tmp/errors
while [ ! -e /tmp/stop ]; do
  if out="$(concoord call --timeout 10s "$domain" "$object" increment 2>&1)"; then
    acked=$((acked + 1))
  else
    failed=$((failed + 1))
    printf '%s call %d: %s\n' "$(date -u +%H:%M:%S)" $((acked + failed)) "$out" >>/tmp/errors
  fi
  printf '%d %d\n' "$acked" "$failed" >/tmp/progress.new && mv /tmp/progress.new /tmp/progress
done
printf '%d %d\n' "$acked" "$failed" >/tmp/result.new && mv /tmp/result.new /tmp/result
# Stay up so the suite can read the result; the pod is deleted afterwards.
exec sleep infinity
