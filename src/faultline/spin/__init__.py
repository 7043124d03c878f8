"""The SPIN cross-check: faultline's verdicts checked against an independent Promela model.

What lives here: `model/*.pml` (the Promela model of the fault path's core protocol,
package data), `model` (the scenarios and the policy switches it has), `run` (spin, gcc
and pan on one pair), `pan` (reading their output) and `compare` (SPIN's verdict beside
faultline's, pair by pair).  docs/spin.md says what the model abstracts and what it
leaves out.  Rule kept: SPIN's verdict comes from the model, never from a table of
expected answers.  Must not be added: faultline model code.
"""
