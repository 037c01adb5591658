"""Test doubles that behave for real: local servers, counting backends, tiny models."""
