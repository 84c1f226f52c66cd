"""soxs-es: an event-sourced data organiser for SOXS (soxspipe) reduction workspaces."""

__version__ = "0.1.0"
