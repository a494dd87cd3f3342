"""Files wansync reads and writes: names, task and job files, sidecars, atomic writes, the lock."""
