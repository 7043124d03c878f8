"""faultline: FreeBSD's VM fault path (D51474) as an executable, checkable model."""

__version__ = "0.1.0"
