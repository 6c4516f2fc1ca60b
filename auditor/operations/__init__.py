"""Running unattended: the daemon, its leader lock, retention, metrics and settings."""
