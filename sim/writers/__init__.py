"""Writers for simulator output: rosbag2 (MCAP) for replay, shards for training."""
