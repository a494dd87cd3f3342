"""Followers of the event stream: hooks and metrics."""
