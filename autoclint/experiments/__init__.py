"""Experiments: the benchmark grid (datasets × methods × seeds), its JSONL records, reports, reproduction."""
