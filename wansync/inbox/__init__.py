"""Paths into the daemon: the inbox watch, settling, and the start-up scan and rescans."""
