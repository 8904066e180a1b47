"""The package version, in one place that every module may import (not the edgeq facade)."""
__version__ = "0.1.0"
