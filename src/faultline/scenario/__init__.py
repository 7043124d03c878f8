"""faultline.scenario."""
