"""dyn_fusion: command-line entry point and package-level helpers."""
