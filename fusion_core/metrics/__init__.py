"""Detection metrics: BEV centre-distance average precision and a detector's evaluation over a source."""
