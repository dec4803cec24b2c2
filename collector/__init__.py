"""The collector: the only part of fleetwatch that talks to AWS.

It discovers the fleet, polls metrics and state into the store, and knows what each poll costs.
It never decides what is wrong.
"""
