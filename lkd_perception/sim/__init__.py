"""sim subpackage of lkd_perception."""
