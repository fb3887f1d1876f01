"""The test emulator's token and status step (for fixtures, and tests that start an emulator themselves)."""

TEST_TOKEN = "emulator-test-token-0123456789"
FAST_STEP = 0.05
