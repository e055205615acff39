"""Offline evaluation of fusion_core outputs: detection AP per class, threshold and frame group, and plots."""
