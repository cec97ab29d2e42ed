"""The build side: bundles.json -> .xyb bundles -> index and pages -> a directory or a bucket."""

__version__ = "0.1.0"
