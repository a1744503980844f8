"""Driving the Google Flow web UI with Playwright: selectors, the browser lifecycle, the steps."""
