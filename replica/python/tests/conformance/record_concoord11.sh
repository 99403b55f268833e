#!/usr/bin/env bash
# Re-record concoord11_outcomes.json: how the original ConCoord 1.1 (Python 2.7)
# answers every scenario in scenarios.json.  Installs ConCoord 1.1 into a cache
# directory if it is not there yet, then runs record_concoord11.py, which starts
# its own replicas on 127.0.0.1:24100-24999 and stops them again.
#
#   ./record_concoord11.sh                      # all scenarios (about 75 s)
#   ./record_concoord11.sh --only lock-basic    # extra arguments go to the recorder
#
# Environment: CONCOORD11_LIB (install dir, default ~/.cache/concoord11/lib),
#              PYTHON2 (a Python 2.7 interpreter, default python2.7; with pyenv,
#              PYENV_VERSION=2.7.18 is tried when plain python2.7 does not run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="${CONCOORD11_LIB:-$HOME/.cache/concoord11/lib}"
py="${PYTHON2:-python2.7}"

if ! "$py" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1; then
    export PYENV_VERSION="${PYENV_VERSION:-2.7.18}"
    "$py" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1 || {
        echo "need a Python 2.7 interpreter (set PYTHON2)" >&2; exit 1; }
fi

if [ ! -d "$lib/concoord" ]; then
    echo "installing ConCoord 1.1.0 into $lib" >&2
    # --no-deps: concoord 1.1.0's metadata requires a package literally named "python"
    "$py" -m pip install --no-deps --target "$lib" \
        concoord==1.1.0 msgpack-python==0.5.6 dnspython==1.16.0
fi

exec "$py" "$here/record_concoord11.py" --concoord-lib "$lib" "$@"
