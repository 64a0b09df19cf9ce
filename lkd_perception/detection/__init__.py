"""detection subpackage of lkd_perception."""
