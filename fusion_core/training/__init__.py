"""Offline training of the fusion detector: configs, data pipeline, Trainer, checkpoints."""
