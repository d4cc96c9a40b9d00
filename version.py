"""The one place that holds JellyChat's version (pyproject.toml, /healthz and the
startup log read it from here); CHANGELOG.md says what each version changed."""

__version__ = "0.2.0"
