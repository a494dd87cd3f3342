"""Talking to DashScope and storage: the task API, uploads, downloads and their checks."""
