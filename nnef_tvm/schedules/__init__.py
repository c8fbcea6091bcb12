"""Fusion patterns, default schedule rules, tuning and the per-device tuning store."""
