"""The web side of usagectl: `usagectl serve` (the HTTP API) and the admin pages."""
