"""Packaged config profiles (``smoke``, ``demo``) as YAML files."""
