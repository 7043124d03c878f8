"""faultline.rt."""
