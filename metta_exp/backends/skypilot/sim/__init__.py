"""The SkyPilot simulator: an account of managed jobs run on this machine as SkyPilot would run them.
Production code reaches it through ``backends.skypilot.select`` only."""
