"""usagectl: per-tenant usage metering and cost reporting."""

__version__ = "0.1.0"
