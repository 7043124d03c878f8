"""faultline.check."""
