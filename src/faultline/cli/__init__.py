"""faultline.cli."""
