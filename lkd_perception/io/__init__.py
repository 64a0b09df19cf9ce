"""io subpackage of lkd_perception."""
