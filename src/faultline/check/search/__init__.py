"""faultline.check.search: which interleavings run, and in what order.

Strategies (random, PCT, replay), DPOR (source and optimal, wakeup trees, the
dependency relation, state caching, subtrees dealt out to workers), the portfolio,
counterexample shrinking and the DPOR validation suite.
"""
