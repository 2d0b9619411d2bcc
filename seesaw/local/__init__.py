"""Run an RLJob on one machine: the same workers and sidecar as local processes."""
