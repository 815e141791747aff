"""Test helpers shared by the suites (no tests here)."""
