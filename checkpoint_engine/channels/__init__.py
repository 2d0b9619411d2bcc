"""Weight channels: how new weights travel from the trainer to the rollout engine."""
