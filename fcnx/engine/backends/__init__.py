"""How the FCNs run: torch (the reference), or a CPU runtime on the net exported once and cached on disk."""
