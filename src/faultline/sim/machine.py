"""The simulated machine: CPUs on a socket topology, and the cache lines they hand off.

What lives here: `Topology` (sockets x cores x SMT threads, numbered as FreeBSD numbers
them on amd64: SMT siblings adjacent, then cores, then sockets) and `CacheLines`, a
small MESI-like directory that says what an access to a line costs the CPU making it:
nothing when the line is already in its cache in the right state, a hand-off (from
sim.costs, by the distance between the CPUs) when another CPU last wrote it.  Writes
to one line are serialised: a line moves between caches one hand-off at a time, so a
hot lock word caps the rate at which CPUs can take it, whatever the lock's hold time.
Rule kept: state is keyed by stable names (rt.context.key_of), never by id(), so a
run replays exactly.  Must not be added: lock semantics (sim.driver) or prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from faultline.sim.costs import CostModel


@dataclass(frozen=True, slots=True)
class Topology:
    """`sockets` x `cores` per socket x `smt` threads per core; CPU c is SMT thread
    c % smt of core c // smt, on socket (c // smt) // cores."""

    sockets: int = 2
    cores: int = 26
    smt: int = 2

    @property
    def ncpus(self) -> int:
        """How many CPUs the machine has."""
        return self.sockets * self.cores * self.smt

    def socket_of(self, cpu: int) -> int:
        """The socket CPU `cpu` sits on."""
        return cpu // self.smt // self.cores

    def handoff_ns(self, a: int, b: int, costs: CostModel) -> int:
        """What moving a line from CPU `b`'s cache to CPU `a`'s costs."""
        if a // self.smt == b // self.smt:
            return costs.handoff_smt_ns
        if self.socket_of(a) == self.socket_of(b):
            return costs.handoff_socket_ns
        return costs.handoff_cross_ns

    def describe(self) -> str:
        """e.g. '2 sockets x 26 cores x 2 SMT = 104 CPUs'."""
        return (f"{self.sockets} socket(s) x {self.cores} cores x {self.smt} SMT = "
                f"{self.ncpus} CPUs")


class CacheLines:
    """Which CPU last wrote each line, which CPUs share it, and until when a hand-off
    in flight keeps it busy."""

    __slots__ = ("_costs", "_lines", "_top", "queued", "transfer_ns", "transfers")

    def __init__(self, topology: Topology, costs: CostModel) -> None:
        self._top = topology
        self._costs = costs
        # key -> [writer cpu, sharers bitmask, busy until (ns)]
        self._lines: dict[object, list[int]] = {}
        self.transfers = 0
        self.transfer_ns = 0
        self.queued = 0           # of the last access's ns: waiting for earlier hand-offs

    def _touch(self, key: object, cpu: int, now: int) -> list[int] | None:
        """The line's state, or None when this is its first touch (it is then ours)."""
        self.queued = 0
        line = self._lines.get(key)
        if line is None:
            self._lines[key] = [cpu, 1 << cpu, now]
        return line

    def write(self, key: object, cpu: int, now: int) -> int:
        """An atomic read-modify-write of line `key` by `cpu` at `now` (a lock word, a
        busy word, a counter): the ns until the line is ours in exclusive state."""
        line = self._touch(key, cpu, now)
        if line is None:
            return 0
        bit = 1 << cpu
        writer, sharers, busy_until = line
        if writer == cpu and sharers == bit:
            return 0
        src = writer if writer != cpu else _other(sharers, cpu)
        start = busy_until if busy_until > now else now
        self.queued = start - now
        end = start + self._top.handoff_ns(cpu, src, self._costs)
        line[0], line[1], line[2] = cpu, bit, end
        self.transfers += 1
        self.transfer_ns += end - now
        return end - now

    def read(self, key: object, cpu: int, now: int) -> int:
        """A plain load of line `key` by `cpu`: a hand-off if we do not share it yet
        (loads of a shared line proceed in parallel: they do not queue)."""
        line = self._touch(key, cpu, now)
        if line is None:
            return 0
        bit = 1 << cpu
        if line[1] & bit:
            return 0
        ns = self._top.handoff_ns(cpu, line[0], self._costs)
        line[1] |= bit
        self.transfers += 1
        self.transfer_ns += ns
        return ns


def _other(sharers: int, cpu: int) -> int:
    """Some CPU other than `cpu` in the bitmask `sharers` (the lowest)."""
    others = sharers & ~(1 << cpu)
    return (others & -others).bit_length() - 1
