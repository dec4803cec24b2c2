"""Detectors: pure functions of series, resource facts and a clock, returning findings.

No boto3, no SQL and no wall clock in here.
"""
