"""Probe suites: YAML files of probe cases, expanded into the requests of a round."""

from auditor.probes.generators import GeneratorError, ProbeGenerator, generators
from auditor.probes.suite import (
    ModelCases,
    PerModelCase,
    Suite,
    expand_requests,
    load_suite,
    load_suite_file,
    load_suites,
    validate_path,
)

__all__ = [
    "GeneratorError",
    "ModelCases",
    "PerModelCase",
    "ProbeGenerator",
    "Suite",
    "expand_requests",
    "generators",
    "load_suite",
    "load_suite_file",
    "load_suites",
    "validate_path",
]
