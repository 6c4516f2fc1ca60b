"""Comparisons -> findings: the diagnosis rules, the verdict, the evidence, calibration."""
