"""Shared test helpers: fixtures, renders, live servers, validators and the Pulumi CLI stand-in."""

from rollout.config import REPO_ROOT

__all__ = ["REPO_ROOT"]
