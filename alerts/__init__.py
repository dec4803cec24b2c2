"""Incidents and notifications: findings become incidents, delivered through a persistent log."""
