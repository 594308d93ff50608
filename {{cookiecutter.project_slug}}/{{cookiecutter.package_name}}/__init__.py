"""The {{ cookiecutter.project_slug }} model: its pipeline steps, inference API and the app in start.py."""

__version__ = "0.1.0"
