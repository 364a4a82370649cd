from edge_runtime.errors import EdgeError


class ExportError(EdgeError):
    """Teacher, student, data or export problem a user can fix."""
