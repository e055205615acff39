"""Early-exit decisions for the multi-exit head: frame confidence from exit outputs, exit
policies (last, confidence, budget, error, deadline), MSDNet's budgeted thresholds and a
QuEE-style error predictor. Nothing here imports the model at run time, so the head may
import these modules without an import cycle."""
