"""faultline.check.running: where work units run, and how a long run survives.

Work units and their merge, runners (this process, local workers, Ray), the progress
units report as they run (live), checking many scenarios at once, checkpoints of a DPOR
exploration, and Ctrl-C.
"""
