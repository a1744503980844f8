"""Veo service."""
