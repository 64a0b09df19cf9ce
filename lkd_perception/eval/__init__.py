"""eval subpackage of lkd_perception."""
