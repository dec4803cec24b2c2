"""The emulated AWS fleet: moto for the control plane, plus a simulator that answers the
operations moto does not serve or serves wrongly (metrics, X-Ray, account limits), so that
fleetwatch, its tests and its benchmarks talk to it through boto3 exactly as to real AWS.

Every metric is a deterministic function of (scenario, seed, resource, time).
"""
