"""The decisions: the task registry, the lifecycle, scheduling, retry, messages and events."""
