"""Use cases: create/list/delete jobs, start/stop training, restart recovery, and the follower thread that owns
running jobs with its pure ending policy."""
