"""faultline.report: everything faultline shows a person, and nothing else.

What lives here: `trace_view` (run descriptions and counterexamples laid out one column
per thread), `tables` (the catalog, one scenario, check results), `sim_tables` and the
simulator's plots and traces, `fit` (tables that fit the terminal's width) and `words`
(plural forms).  Rule kept: report
renders data produced by `check` and `scenario`; it never runs an execution, parses
arguments or decides an exit code (that is `cli`).  Must not be added: model or checker
logic.
"""
