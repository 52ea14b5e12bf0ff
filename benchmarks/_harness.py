"""Timing discipline shared by every scenario: warm-up, GC, interleaving, medians.

A *variant* is a zero-argument callable that runs one measured run of one system and
returns the seconds it measured with :data:`clock` (inside its own event loop, so loop
start-up is excluded).
:func:`interleave` runs a set of variants round-robin, rotating the order every round, so
that a burst of load on this shared machine hits every system about equally; ratios are
then taken per round (paired) and summarised by their median.

GC: the heap left by imports and warm-up is frozen once (``gc.freeze()``), because every
system is imported into this one process and otherwise each one's full collections would
also walk the other systems' modules. Before each measured run, ``gc.collect()`` starts it
from a clean young generation; during the run the collector stays on with default
thresholds, as users run it, so allocation-heavy designs pay for their garbage.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Hashable, Mapping

import attrs

Variant = Callable[[], float]

clock = time.process_time
"""The clock of every measured sample: CPU seconds used by this process.

This machine is shared (load averages of 15-25 on two cores while the other engineers run
their suites), and wall-clock time counts every moment the process waited for a core, at
random. CPU time does not, and every sample is CPU-bound: no sleeps, no waiting for I/O (the
audit rows' writes go to the page cache and count as system time). Caches and memory
bandwidth shared with other processes still add noise, which interleaving handles."""


@attrs.frozen
class Samples:
    """The measured seconds of one variant, one per round, in round order."""

    seconds: tuple[float, ...]
    """CPU seconds of each measured run (:data:`clock`, read inside the event loop)."""

    @property
    def median(self) -> float:
        """The median of :attr:`seconds`."""
        return statistics.median(self.seconds)


def freeze_heap() -> None:
    """Move everything alive now (modules, classes, warm caches) out of the GC's way."""
    gc.collect()
    gc.freeze()


def interleave(variants: Mapping[Hashable, Variant], rounds: int, warmup: int = 1) -> dict[Hashable, Samples]:
    """Run each variant ``warmup`` times untimed, then ``rounds`` rounds in rotating order.

    Keys are any labels (the report uses ``(case, system)`` pairs, so that several cases of
    one scenario can be interleaved together). A variant that returns ``inf`` (it hit its
    time cap) is run no more: its samples end with that ``inf``, and its median is reported
    as over the cap.
    """
    names = list(variants)
    seconds: dict[Hashable, list[float]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            if variants[name]() == math.inf:
                seconds[name].append(math.inf)
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            if math.inf in seconds[name]:
                continue
            gc.collect()
            seconds[name].append(variants[name]())
    return {name: Samples(tuple(s)) for name, s in seconds.items()}
