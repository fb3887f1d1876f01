"""The agent's stages: intake, submit (stage-in, create, tag, assign, submit), watch, collect, cancel."""
