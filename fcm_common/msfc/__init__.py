"""advMSFC: the MSFF/MSFR networks, their checkpoints, the QACT tables, and SLS training."""
