"""The running daemon: the loop, the pipeline and submitter, workers, journal and publish."""
