"""Datasets and the sample type every dataset yields (simulator shards, rosbags)."""
