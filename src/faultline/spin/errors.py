"""The errors of the SPIN cross-check, by whose fault they are.

What lives here: `SpinError` and its three kinds.  `SpinUnsupported`: the scenario or the
policy is not in the Promela model (bad input).  `SpinToolMissing`: spin or gcc is not
installed (bad input: the message says how to install them).  `SpinModelError`: spin,
gcc or pan failed, or a run reached a path the Promela model leaves out (a bug of the
model, never a verdict).  Must not be added: anything else.
"""

from __future__ import annotations


class SpinError(Exception):
    """Something kept the SPIN cross-check from giving a verdict."""


class SpinUnsupported(SpinError):
    """The scenario or the policy has no Promela model."""


class SpinToolMissing(SpinError):
    """spin or gcc is not on PATH."""


class SpinModelError(SpinError):
    """spin, gcc or pan failed, or the model reached one of its limits."""
