"""The local cluster launcher: `python -m services.launcher` (what `make up` runs).

Modules:
  ports         every port the cluster needs, checked free before anything starts
  envoy_config  the descriptor set and the rendered Envoy config
  logs          the merged, readable log of all children
  supervisor    child processes: start, health-wait, restart with backoff, stop
  app           the start-up sequence and the signal handling
"""
