"""SkyPilot managed jobs: the backend (backend), its task (task), the SDK behind one small interface (api),
and the simulator behind the same interface (sim, chosen in select only). Nothing heavy is imported here."""
