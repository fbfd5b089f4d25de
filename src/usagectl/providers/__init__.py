"""Usage sources, one module each behind providers.base.Provider."""
