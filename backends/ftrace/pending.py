"""The ftrace backend's table of pair starts waiting for their end.

Keys are pair key tuples; an entry is what handlers.py stores for a start
(its time stamp, or a tuple or list with carried fields), REJECTED for a
start its filters rejected, a Shared for a shared key value that
several starts hold, or for a nested pair a Stack of those entries
(innermost last, TOO_DEEP beyond the pair's depth) (core.semantics states the rules).  Insertion order
is age: beyond max_pending the oldest entries are dropped (counted in
dropped_starts), so that ends that never come cannot grow memory forever.
"""

from collections import OrderedDict


class _Rejected(object):
    """The pending entry of a pair start its filters rejected."""

    __slots__ = ()

    def __repr__(self):
        return "<rejected start>"


REJECTED = _Rejected()


class _TooDeep(object):
    """A nested pair's start beyond its depth (core.semantics): it holds
    its level in the key's stack, unmeasured."""

    __slots__ = ()

    def __repr__(self):
        return "<start too deep>"


TOO_DEEP = _TooDeep()


class Stack(list):
    """The pending entry of a nested pair's key: its starts, innermost
    last (a class of its own: a pair with a mark stores lists)."""

    __slots__ = ()


class Shared(object):
    """The pending entry of a shared key (Pair.shared) that several starts
    hold: `n` ends are still to come, none of them measured."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return "<shared key, %d ends to come>" % self.n


class PendingStarts(object):
    """table: the OrderedDict itself (the generated handlers use it
    directly); counters: where unmatched ends and dropped starts are
    counted (the Aggregator's, reset in place each interval)."""

    def __init__(self, max_pending, counters):
        # insertion order = age: the oldest start is dropped first, in O(1)
        # (a dict's first key is found by skipping the slots of deleted
        # ones, so dropping from the front of a dict is quadratic)
        self.table = OrderedDict()
        self.max_pending = max_pending
        self.counters = counters

    def __len__(self):
        return len(self.table)

    def reject(self, key):
        """A pair start (or mark) its filters rejected: its end is dropped
        (a shared key stays shared)."""
        if self.table.get(key).__class__ is Shared:
            return
        self.table[key] = REJECTED
        if len(self.table) > self.max_pending:
            self.drop_oldest()

    def share(self, key):
        """One more start for a shared key that is already pending."""
        s = self.table[key]
        if s.__class__ is Shared:
            s.n += 1
        else:
            self.table[key] = Shared(2)

    def end_shared(self, key, s, counted):
        """An end for a key several starts hold (taken out of the table): not
        measured (`counted` as unmatched unless its filters rejected it);
        the key stays pending for the ends still to come."""
        if s.__class__ is not Shared:
            return
        if counted:
            self.counters.unmatched += 1
        if s.n > 1:
            s.n -= 1
            self.table[key] = s

    def drop_oldest(self):
        extra = len(self.table) - self.max_pending
        if extra <= 0:
            return
        popitem = self.table.popitem
        dropped = 0
        for _ in range(extra):
            v = popitem(last=False)[1]
            # a nested pair's key holds a stack: each start in it is dropped
            dropped += len(v) if v.__class__ is Stack else 1
        self.counters.dropped_starts += dropped

    def release_shared(self):
        """Forget every shared key (after lost events: the end it waits for
        may have been lost)."""
        for k in [k for k, v in self.table.items() if v.__class__ is Shared]:
            del self.table[k]
