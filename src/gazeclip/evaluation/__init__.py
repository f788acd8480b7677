"""Evaluation of trained runs on a test split: metrics (`metrics`), `evaluate`, side-by-side
`compare` with paired bootstrap intervals, and `robustness` under perturbations."""
