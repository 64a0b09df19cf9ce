"""lines subpackage of lkd_perception."""
