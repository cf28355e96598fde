"""The web dashboard: static files under static/ (plain ES modules, no build step, no third-party code) and how
they are served."""
