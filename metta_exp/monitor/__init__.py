"""The live view of a group: records to a renderable (view, layout), and the Live loop (live)."""
