"""Bundled data: the demo event log."""
