"""Test and demo servers on 127.0.0.1, and the pytest plugin that serves them as fixtures."""
