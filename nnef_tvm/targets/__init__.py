"""The target registry: named targets (TVM target dict, host, cross compiler, tools)."""
