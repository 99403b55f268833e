"""Scenario runner shared by the ConCoord 1.1 recorder and the replay client.

Runs one scenario from scenarios.json against some implementation and returns
one JSON-ready outcome per step.  Works unchanged on Python 2.7 and 3.9+, so
the recording (made through ConCoord 1.1's own Python 2 client) and the replay
(made through a Python 3 client) share exactly the same step semantics and
value normalization.

The implementation is reached through two callables supplied by an adapter:

    make_proxy(type_name, client_index) -> proxy
        One proxy per client of the scenario; each must be its own
        connection / client identity.  Called for clients 0..N-1 in order
        before the first step.
    invoke(proxy, method, args) -> value
        Calls `method(*args)` on the replicated object behind `proxy` and
        returns the result or raises.  Adapters raise the object's own
        exception (unwrapping any client-side wrapper) so that the recorded
        error kind is the object's exception class.  The pseudo method
        "__concoordinit__" means "re-run the object's constructor with args".

Step semantics (see run_scenario):
  * {"client": c, "method": m, "args": [...]} submits the call to client c's
    worker thread and waits up to `settle` seconds.  If it finished, its
    outcome is recorded; otherwise {"blocked": true} is recorded and the call
    stays pending on that client.  Calling on a client that still has a
    pending call is a scenario error (RunnerError).
  * {"client": c, "collect": true} waits up to `collect_timeout` seconds
    (or the step's own "timeout") for client c's pending call and records its
    outcome, or {"blocked": true} again if it is still running (it stays
    pending).  If the client has nothing pending, {"idle": true} is recorded
    (used where a call that ought to block returns at once in some
    implementation).
  * "client" defaults to 0, "args" to [].
  * Optional "redact": a regular expression; every match inside the strings
    of the outcome (values and error messages) is replaced by "<redacted>".
    Used for addresses / ports that differ from run to run.

Outcomes:
  {"ok": value} | {"error": "<ExceptionClassName>", "message": "<str(exc)>"}
  | {"blocked": true} | {"idle": true}

Value normalization (so that Python 2 and 3 give identical JSON):
  bytes / py2 str -> text (utf-8), tuples -> lists, sets -> lists sorted by
  their JSON text, dicts -> {"__dict__": [[k, v], ...]} sorted by the JSON
  text of the normalized key, bools/None/ints kept, floats stay floats
  (1.0 and 1 remain distinct in JSON), exception instances returned as
  values -> {"__exception__": name, "message": str}, anything else ->
  {"__object__": type name, "str": str(value)}.
"""
import json
import re
import sys
import threading

try:  # Python 2
    import Queue as queue
    text_type = unicode  # noqa: F821
    integer_types = (int, long)  # noqa: F821
except ImportError:  # Python 3
    import queue
    text_type = str
    integer_types = (int,)


class RunnerError(Exception):
    """The scenario itself is malformed (not an outcome of the system)."""


def to_text(value):
    """Best-effort conversion of str/bytes/unicode/anything to text."""
    if isinstance(value, text_type):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return text_type(value)
    except Exception:
        return to_text(str(value))


def _json_key(value):
    return json.dumps(value, sort_keys=True)


def normalize(value):
    """Turn a returned value into JSON data that compares equal across Pythons."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, integer_types):
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, (bytes, text_type)):
        return to_text(value)
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((normalize(v) for v in value), key=_json_key)
    if isinstance(value, dict):
        items = [[normalize(k), normalize(v)] for k, v in value.items()]
        items.sort(key=lambda kv: _json_key(kv[0]))
        return {"__dict__": items}
    if isinstance(value, BaseException):
        return {"__exception__": type(value).__name__, "message": to_text(value)}
    return {"__object__": type(value).__name__, "str": to_text(value)}


def error_outcome(exc):
    return {"error": type(exc).__name__, "message": to_text(exc)}


def _redact(data, pattern):
    if isinstance(data, text_type):
        return pattern.sub(u"<redacted>", data)
    if isinstance(data, list):
        return [_redact(v, pattern) for v in data]
    if isinstance(data, dict):
        return dict((k, _redact(v, pattern)) for k, v in data.items())
    return data


class _Call(object):
    def __init__(self, method, args):
        self.method = method
        self.args = args
        self.outcome = None
        self.done = threading.Event()


class _Client(object):
    """One scenario client: a proxy plus a daemon worker thread running its calls."""

    def __init__(self, index, proxy, invoke):
        self.index = index
        self.proxy = proxy
        self.invoke = invoke
        self.pending = None
        self.jobs = queue.Queue()
        worker = threading.Thread(target=self._work, name="client-%d" % index)
        worker.daemon = True
        worker.start()

    def _work(self):
        while True:
            call = self.jobs.get()
            try:
                outcome = {"ok": normalize(self.invoke(self.proxy, call.method, call.args))}
            except Exception as exc:  # the object's (unwrapped) exception
                outcome = error_outcome(exc)
            call.outcome = outcome
            call.done.set()

    def submit(self, method, args):
        call = _Call(method, args)
        self.jobs.put(call)
        return call


def _wait(call, timeout):
    call.done.wait(timeout)
    return call.done.is_set()


def run_scenario(scenario, make_proxy, invoke, settle=1.0, collect_timeout=5.0):
    """Run every step of `scenario` and return the list of outcomes (one per step)."""
    steps = scenario["steps"]
    nclients = 1 + max([s.get("client", 0) for s in steps] or [0])
    clients = [_Client(i, make_proxy(scenario["type"], i), invoke) for i in range(nclients)]
    outcomes = []
    for index, step in enumerate(steps):
        client = clients[step.get("client", 0)]
        if step.get("collect"):
            if client.pending is None:
                outcome = {"idle": True}
            elif _wait(client.pending, step.get("timeout", collect_timeout)):
                outcome = client.pending.outcome
                client.pending = None
            else:
                outcome = {"blocked": True}
        elif "method" in step:
            if client.pending is not None:
                raise RunnerError("%s step %d: client %d still has a pending call"
                                  % (scenario["name"], index, client.index))
            call = client.submit(step["method"], list(step.get("args", [])))
            if _wait(call, settle):
                outcome = call.outcome
            else:
                client.pending = call
                outcome = {"blocked": True}
        else:
            raise RunnerError("%s step %d: neither method nor collect" % (scenario["name"], index))
        if step.get("redact"):
            outcome = _redact(outcome, re.compile(step["redact"]))
        outcomes.append(outcome)
    return outcomes


def load_scenarios(path):
    with open(path) as handle:
        return json.load(handle)["scenarios"]


def dump_json(data, handle):
    """Pretty, stable JSON identical under Python 2 and 3."""
    text = json.dumps(data, indent=2, sort_keys=True, separators=(",", ": "), ensure_ascii=True)
    handle.write(text + "\n")


if __name__ == "__main__":
    sys.stderr.write("runner.py is a library; see record_concoord11.py\n")
    sys.exit(2)
