"""A group's analysis notebook: cells from Jinja2 templates (cells, search) and its executed HTML report
(report)."""
