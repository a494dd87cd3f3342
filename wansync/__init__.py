"""wansync: fetch finished Wan 2.7 videos from DashScope into a folder."""

__version__ = "0.1.0"
