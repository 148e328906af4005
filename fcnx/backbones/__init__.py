"""The backbone plugin interface: specs, hooks, the plugin manager and registry, convolutionalization, checkpoints."""
