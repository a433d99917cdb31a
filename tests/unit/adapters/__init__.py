"""Tests of solvency.adapters."""
