"""fusion_core: models, gates, energy, training and evaluation. Never imports rclpy."""
