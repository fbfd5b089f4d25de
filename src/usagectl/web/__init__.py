"""The HTTP layer of `usagectl serve` (FastAPI). Thin: it authenticates, parses parameters and renders the
report objects of usagectl.reports with usagectl.render.json; no SQL here. The core never imports this package.

`create_app(settings)` builds the app; `auth.Principal` is what every route (and later every page) depends on.
"""
