"""faultline.check.running: where work units run, and how a long run survives.

Work units and their merge, runners (this process, local workers, Ray), checking
many scenarios at once, and checkpoints of a DPOR exploration.
"""
