"""soxspipe, as soxs-es uses it without importing it: the command that runs its recipes, the settings files
it reads, and what its recipes write into the workspace."""
