"""The Slurm backend of launch/launcher.py: one Slurm job per FL process (commands.py: what is asked of Slurm and
what its answers mean, pure; monitor.py: the one thread that asks; launcher.py: the backend)."""
