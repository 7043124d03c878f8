"""faultline.check.judging: what a run is judged by, and how a verdict is explained.

Structural invariants of the model, the happens-before race detector, event coverage,
the happens-before graph of a counterexample, the state at a violation (snapshot) and a
counterexample's replay for the default view (anatomy).  (The memory oracle judges too; it
lives with the scenario it interprets, in scenario.oracle.)
"""
