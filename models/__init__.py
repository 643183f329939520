"""Bayesian hierarchical models of log hazard ratios: prior specifications, PyMC model builders
and the exact (quadrature over tau) engine."""
