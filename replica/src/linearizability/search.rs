//! The search for a legal order of one partition's calls (Wing & Gong, with Lowe's
//! memoization; the shape of Porcupine's and Knossos' checkers).
//!
//! Calls and returns are laid out on a doubly linked list in time order. Walking it, a call
//! may be placed next (linearized) if the model accepts it with its outcome; it is then
//! unlinked and the walk starts over. Reaching a return whose call was not placed means the
//! order so far cannot be finished: undo the last placement and try the next candidate.
//! A (placed set, model state) pair seen before is never explored twice. Calls that never
//! returned have no return on the list, so nothing forces them in: they may be placed
//! anywhere after their invocation, or not at all.

use super::model::State;
use super::{
    Call, Entry, History, Outcome, Partition, Violation, describe_entry, fmt_time, short_session,
};
use std::collections::HashSet;

const NIL: usize = usize::MAX;

/// A session end the history did not record; it may or may not have happened.
static IMPLICIT_END: Call = Call::EndSession;

struct POp<'a> {
    client: u64,
    call: &'a Call,
    invoke: u64,
    ret: Option<(u64, &'a Outcome)>,
    /// Index into the history, None for an implicit session end.
    entry: Option<usize>,
}

impl POp<'_> {
    fn describe(&self, history: &History) -> String {
        match self.entry {
            Some(i) => describe_entry(i, &history.entries[i]),
            None => format!(
                "session {} may have ended (unrecorded) any time after {}",
                short_session(self.client),
                fmt_time(self.invoke)
            ),
        }
    }
}

/// The deepest partial order the search built before it got stuck.
struct Stuck {
    placed: Vec<usize>,
    /// The call whose return came before it could be placed (None: ran off the list).
    blocked: Option<usize>,
}

/// The doubly linked list of calls and returns (Knuth's dancing links: unlinked entries
/// keep their own pointers, so relinking in reverse order restores the list).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }
}

pub(super) fn check_partition(
    history: &History,
    name: &str,
    part: &Partition,
    max_steps: u64,
) -> Result<(), Violation> {
    let mut ops: Vec<POp> = part
        .calls
        .iter()
        .map(|&i| {
            let e: &Entry = &history.entries[i];
            POp {
                client: e.client,
                call: &e.op.call,
                invoke: e.invoke,
                ret: e.ret.as_ref().map(|(t, o)| (*t, o)),
                entry: Some(i),
            }
        })
        .collect();
    ops.extend(part.implicit_ends.iter().map(|&(client, invoke)| POp {
        client,
        call: &IMPLICIT_END,
        invoke,
        ret: None,
        entry: None,
    }));
    let n = ops.len();

    // Calls before returns at equal times: such calls count as concurrent.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.invoke, false, i));
        if let Some((t, _)) = o.ret {
            events.push((t, true, i));
        }
    }
    events.sort_unstable();
    let count = events.len();
    let head = count;
    let mut links = Links {
        next: vec![NIL; count + 1],
        prev: vec![NIL; count + 1],
    };
    let mut call_at = vec![0; n];
    let mut ret_at = vec![None; n];
    let mut is_ret = vec![false; count];
    let mut op_at = vec![0; count];
    for (k, &(_, r, i)) in events.iter().enumerate() {
        op_at[k] = i;
        is_ret[k] = r;
        if r {
            ret_at[i] = Some(k);
        } else {
            call_at[i] = k;
        }
        links.prev[k] = if k == 0 { head } else { k - 1 };
        links.next[k] = if k + 1 < count { k + 1 } else { NIL };
    }
    links.next[head] = if count > 0 { 0 } else { NIL };

    let lift = |links: &mut Links, i: usize| {
        links.unlink(call_at[i]);
        if let Some(r) = ret_at[i] {
            links.unlink(r);
        }
    };
    let unlift = |links: &mut Links, i: usize| {
        if let Some(r) = ret_at[i] {
            links.relink(r);
        }
        links.relink(call_at[i]);
    };

    let mut remaining = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut state = part.init.clone();
    let mut placed = vec![0u64; n.div_ceil(64).max(1)];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut stuck: Option<Stuck> = None;
    let mut entry = links.next[head];
    let mut steps: u64 = 0;
    loop {
        if remaining == 0 {
            return Ok(());
        }
        steps += 1;
        if steps > max_steps {
            return Err(Violation::TooHard {
                partition: name.to_string(),
                steps: max_steps,
            });
        }
        if entry != NIL && !is_ret[entry] {
            let i = op_at[entry];
            let o = &ops[i];
            if let Some((next, out)) = part.kind.apply(&state, o.client, o.call)
                && o.ret.is_none_or(|(_, seen)| *seen == out)
            {
                placed[i / 64] |= 1 << (i % 64);
                if seen.insert((placed.clone(), next.clone())) {
                    stack.push((i, std::mem::replace(&mut state, next)));
                    lift(&mut links, i);
                    if o.ret.is_some() {
                        remaining -= 1;
                    }
                    entry = links.next[head];
                    continue;
                }
                placed[i / 64] &= !(1 << (i % 64));
            }
            entry = links.next[entry];
            continue;
        }
        // A return whose call is not placed (or the end of the list): back up.
        if stuck.as_ref().is_none_or(|s| stack.len() > s.placed.len()) {
            stuck = Some(Stuck {
                placed: stack.iter().map(|(i, _)| *i).collect(),
                blocked: (entry != NIL).then(|| op_at[entry]),
            });
        }
        let Some((i, previous)) = stack.pop() else {
            return Err(Violation::NotLinearizable {
                partition: name.to_string(),
                explanation: explain(history, part, &ops, stuck),
            });
        };
        state = previous;
        placed[i / 64] &= !(1 << (i % 64));
        unlift(&mut links, i);
        if ops[i].ret.is_some() {
            remaining += 1;
        }
        entry = links.next[call_at[i]];
    }
}

/// Calls listed around the point where the search got stuck, at most.
const CONTEXT_CALLS: usize = 40;

fn explain(history: &History, part: &Partition, ops: &[POp], stuck: Option<Stuck>) -> String {
    let returned = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut out = format!(
        "no order of its {} calls ({returned} returned) fits a {}.\n",
        ops.len(),
        part.kind.name()
    );
    let Some(stuck) = stuck else {
        return out;
    };
    let mut state = part.init.clone();
    out.push_str(&format!(
        "The longest order that fits places {} of them, starting from {state}:\n",
        stuck.placed.len()
    ));
    let mut placed = vec![false; ops.len()];
    for &i in &stuck.placed {
        let o = &ops[i];
        if let Some((next, _)) = part.kind.apply(&state, o.client, o.call) {
            state = next;
        }
        placed[i] = true;
        out.push_str(&format!("  {}   => {state}\n", o.describe(history)));
    }
    let Some(b) = stuck.blocked else {
        return out;
    };
    let o = &ops[b];
    let ret_t = o.ret.map_or(u64::MAX, |(t, _)| t);
    out.push_str(&format!(
        "Then this call must take effect, as it returned, but cannot:\n  {}\n",
        o.describe(history)
    ));
    match part.kind.apply(&state, o.client, o.call) {
        None => out.push_str(&format!(
            "  with the object {state}, it cannot take effect (it would block, or its session has ended),\n"
        )),
        Some((_, would)) => out.push_str(&format!(
            "  with the object {state}, it would return {would},\n"
        )),
    }
    out.push_str("  and no other call that may come first makes it fit.\n");
    let open: Vec<&POp> = ops
        .iter()
        .enumerate()
        .filter(|(i, p)| !placed[*i] && *i != b && p.invoke <= ret_t)
        .map(|(_, p)| p)
        .collect();
    if !open.is_empty() {
        out.push_str("Calls not placed that were invoked before it returned:\n");
        for p in open.iter().take(CONTEXT_CALLS) {
            out.push_str(&format!("  {}\n", p.describe(history)));
        }
        if open.len() > CONTEXT_CALLS {
            out.push_str(&format!("  ... and {} more\n", open.len() - CONTEXT_CALLS));
        }
    }
    out
}
