"""Offline fakes of Google's services (SPEC §8): a Gemini API that speaks the real wire
protocol, and a Flow site that behaves like the real UI where the automation depends on it."""
