"""Everything that speaks HTTP to Rescale: the client, transfers and the local emulator."""
